"""review: unsure frames saved as JPEGs in a folder that never grows past its limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


def test_save_later_writes_on_the_writer_thread_and_close_waits_for_it(tmp_path):
    review = ReviewFolder(tmp_path / "review")
    for i in range(6):  # more than MAX_PENDING: the extra ones wait for room instead of piling up
        review.save_later(make_photo(i), f"item-{i}", "paper", 0.2)
    review.close()
    review.close()
    assert len(review.files()) == 6


def test_a_failed_background_save_is_a_warning_not_a_crash(tmp_path, caplog):
    blocker = tmp_path / "review"
    blocker.write_text("a file where the folder should be")
    review = ReviewFolder(blocker)
    review.save_later(make_photo(0), "item-1", "paper", 0.2)
    review.close()
    assert "review folder" in caplog.text


def test_an_unexpected_error_in_the_writer_is_logged_with_its_item(tmp_path, caplog):
    review = ReviewFolder(tmp_path / "review")
    review.save_later(np.zeros((10, 10, 2), np.uint8), "item-7", "paper", 0.2)  # not RGB: cv2 refuses
    review.close()
    assert review.files() == [] and "item-7" in caplog.text


def test_a_photo_saved_after_the_clock_stepped_back_is_kept(tmp_path, monkeypatch):
    from datetime import datetime, timezone

    from edge import review

    folder = ReviewFolder(tmp_path / "review", max_files=3)
    for i in range(3):
        folder.save(np.zeros((8, 8, 3), np.uint8), f"item-{i}", "glass", 0.4)

    class Past(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2020, 1, 1, tzinfo=timezone.utc)  # before NTP set the clock

    monkeypatch.setattr(review, "datetime", Past)
    newest = folder.save(np.zeros((8, 8, 3), np.uint8), "item-3", "glass", 0.4)
    assert newest.exists() and len(folder.files()) == 3


def test_a_save_that_fails_midway_leaves_no_half_written_file(tmp_path, monkeypatch):
    review = ReviewFolder(tmp_path / "review")

    def disk_full(path, data):
        with path.open("wb") as handle:
            handle.write(data[:10])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", disk_full)
    with pytest.raises(OSError):
        review.save(make_photo(0), "item-1", "paper", 0.2)
    assert list((tmp_path / "review").iterdir()) == []


def test_half_written_files_left_by_a_power_cut_are_removed_at_start(tmp_path):
    folder = tmp_path / "review"
    folder.mkdir()
    (folder / ".20260101T000000000000_item-1_paper_0.20.jpg.part").write_bytes(b"half a jpeg")
    (folder / "20260101T000000000001_item-2_paper_0.30.jpg").write_bytes(b"a kept photo")
    ReviewFolder(folder)
    assert [path.name for path in folder.iterdir()] == ["20260101T000000000001_item-2_paper_0.30.jpg"]
