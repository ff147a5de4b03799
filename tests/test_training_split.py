"""Splits: stratified, seeded, duplicates kept together; split files checked against the data."""

import json
import shutil

import pytest

from tests.conftest import write_class_folders
from training.data import discover
from training.errors import DataError
from training.split import copies_across_splits, load_split, make_split, place_unlisted, save_split


@pytest.fixture
def dataset(tmp_path):
    root = write_class_folders(tmp_path / "d", per_class=20)
    # a duplicate within a class and one across classes
    shutil.copy(root / "glass" / "glass_0.jpg", root / "glass" / "glass_dup.jpg")
    shutil.copy(root / "metal" / "metal_0.jpg", root / "cardboard" / "cardboard_dup.jpg")
    return discover(root)


def test_split_is_stratified_and_covers_every_file_once(dataset):
    split = make_split(dataset, 0.2, 0.2, seed=1)
    names = [rel for part in split.values() for rel, _ in part]
    assert sorted(names) == sorted(dict(dataset.items))
    for label in dataset.labels:
        in_test = sum(1 for _, lab in split["test"] if lab == label)
        assert 3 <= in_test <= 5


def test_identical_files_share_a_split_and_cross_label_ones_go_to_train(dataset):
    split = make_split(dataset, 0.2, 0.2, seed=1)
    where = {rel: name for name, part in split.items() for rel, _ in part}
    assert where["glass/glass_0.jpg"] == where["glass/glass_dup.jpg"]
    assert where["metal/metal_0.jpg"] == where["cardboard/cardboard_dup.jpg"] == "train"


def test_same_seed_same_split(dataset):
    assert make_split(dataset, seed=3) == make_split(dataset, seed=3)
    assert make_split(dataset, seed=3) != make_split(dataset, seed=4)


def test_split_file_round_trips_and_absent_files_are_named(dataset, tmp_path):
    split = make_split(dataset, seed=0)
    save_split(split, tmp_path / "split.json", str(dataset.root))
    assert load_split(tmp_path / "split.json", dataset) == split
    data = json.loads((tmp_path / "split.json").read_text())
    data["splits"]["test"].append("glass/missing.jpg")
    (tmp_path / "split.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="glass/missing.jpg"):
        load_split(tmp_path / "split.json", dataset)


def test_a_split_file_with_a_photo_in_two_lists_is_refused(dataset, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["glass/glass_1.jpg", "glass/glass_2.jpg"], "val": ["glass/glass_3.jpg"],
                                "test": ["glass/glass_1.jpg"]}))
    with pytest.raises(DataError, match="1 files are in more than one of train/val/test: glass/glass_1.jpg"):
        load_split(path, dataset)


def test_identical_copies_in_different_splits_are_found(dataset, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["glass/glass_0.jpg", "metal/metal_1.jpg"], "val": ["metal/metal_2.jpg"],
                                "test": ["glass/glass_dup.jpg"]}))
    split = load_split(path, dataset)
    assert copies_across_splits(dataset.root, split) == [["glass/glass_0.jpg", "glass/glass_dup.jpg"]]


def test_a_photo_listed_twice_in_one_list_is_refused(dataset, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["glass/glass_1.jpg"], "val": ["glass/glass_3.jpg"],
                                "test": ["glass/glass_2.jpg", "glass/glass_2.jpg"]}))
    with pytest.raises(DataError, match="1 files are listed twice in one list .*: glass/glass_2.jpg"):
        load_split(path, dataset)


@pytest.mark.parametrize("entry", [3, None, ["glass/glass_1.jpg"], "  "])
def test_an_entry_that_is_not_a_path_is_one_clear_error(dataset, tmp_path, entry):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["glass/glass_1.jpg", entry], "val": [], "test": []}))
    with pytest.raises(DataError, match="'train' holds 1 entries that are not file paths"):
        load_split(path, dataset)


def test_dot_slash_and_windows_separators_name_the_same_photos(dataset, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["./glass/glass_1.jpg"], "val": ["glass\\glass_3.jpg"],
                                "test": ["glass/glass_2.jpg"]}))
    split = load_split(path, dataset)
    assert [rel for rel, _ in split["train"]] == ["glass/glass_1.jpg"]
    assert [rel for rel, _ in split["val"]] == ["glass/glass_3.jpg"]


def _split_file_naming_a_few(dataset, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["glass/glass_1.jpg", "metal/metal_1.jpg"], "val": ["glass/glass_2.jpg"],
                                "test": ["glass/glass_0.jpg"]}))
    return load_split(path, dataset)


def test_photos_a_split_file_does_not_name_are_left_out_and_counted(dataset, tmp_path):
    split = _split_file_naming_a_few(dataset, tmp_path)
    kept, notes = place_unlisted(split, dataset, "ignore")
    assert kept == split
    assert len(notes) == 1 and f"{len(dataset.items) - 4} photos" in notes[0] and "--unlisted train" in notes[0]


def test_unlisted_photos_can_join_train_but_never_as_copies_of_a_val_or_test_photo(dataset, tmp_path):
    split = _split_file_naming_a_few(dataset, tmp_path)
    grown, notes = place_unlisted(split, dataset, "train")
    assert grown["val"] == split["val"] and grown["test"] == split["test"]
    trained = {rel for rel, _ in grown["train"]}
    assert "glass/glass_dup.jpg" not in trained  # byte-identical to the test photo glass_0.jpg
    assert "cardboard/cardboard_dup.jpg" in trained and ("cardboard/cardboard_dup.jpg", "cardboard") in grown["train"]
    assert len(trained) == len(dataset.items) - 3
    assert notes == [f"note: training on {len(dataset.items) - 5} of the {len(dataset.items) - 4} photos the split "
                     f"file does not name",
                     "warning: leaving out the other 1, a copy of a val or test photo: glass/glass_dup.jpg"]


def test_a_split_file_that_names_every_photo_says_nothing_about_unlisted_ones(dataset, tmp_path):
    split = make_split(dataset, seed=0)
    assert place_unlisted(split, dataset, "train") == (split, [])


@pytest.mark.parametrize("payload", [{"train": ["glass/glass_1.jpg"], "val": [], "test": [],
                                      "holdout": ["metal/metal_1.jpg"]},
                                     {"splits": {"train": ["glass/glass_1.jpg"], "val": [], "test": [], "note": "x"}}])
def test_a_list_beside_train_val_and_test_is_a_typo_named_not_ignored(dataset, tmp_path, payload):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(DataError, match="unknown entry '(holdout|note)' beside the lists"):
        load_split(path, dataset)


def test_notes_beside_the_lists_are_fine(dataset, tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"seed": 57, "note": "x", "splits": {"train": ["glass/glass_1.jpg"], "val": [],
                                                                   "test": []}}))
    assert load_split(path, dataset)["train"] == [("glass/glass_1.jpg", "glass")]
    path.write_text(json.dumps({"classes": ["glass"], "train": ["glass/glass_1.jpg"], "val": [], "test": []}))
    assert load_split(path, dataset)["train"] == [("glass/glass_1.jpg", "glass")]
