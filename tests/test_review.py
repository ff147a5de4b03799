"""review: unsure frames saved as JPEGs in a folder that never grows past its limit."""

from __future__ import annotations

from edge import imaging
from edge.review import ReviewFolder
from tests.conftest import make_photo


def test_saves_a_readable_jpeg_named_after_the_item(tmp_path):
    review = ReviewFolder(tmp_path / "review")
    path = review.save(make_photo(0), "item-42", "glass", 0.41)
    assert path.parent == tmp_path / "review" and path.suffix == ".jpg"
    assert "item-42" in path.name and "glass" in path.name and "0.41" in path.name
    assert imaging.read_image(path).shape == (48, 64, 3)


def test_keeps_only_the_newest_max_files(tmp_path):
    review = ReviewFolder(tmp_path / "review", max_files=3)
    paths = [review.save(make_photo(1), f"item-{i}", "metal", 0.3) for i in range(5)]
    assert review.files() == paths[2:]
    assert not paths[0].exists()


def test_names_from_outside_cannot_escape_the_folder(tmp_path):
    review = ReviewFolder(tmp_path / "review")
    path = review.save(make_photo(2), "../../etc/passwd", "a/b", 0.1)
    assert path.parent == tmp_path / "review"
    assert list((tmp_path / "review").iterdir()) == [path]
