"""Train/val/test splits: read a split file, or make a stratified, seeded one.

Byte-identical files always land in one split (a duplicate in train and test would
inflate the test score); files that carry two labels go to train only.

Usage:
    split = load_split("../shared/data/trashnet-split.json", dataset)
    split, notes = place_unlisted(split, dataset, "train")  # photos it does not name, e.g. the bin's own
    split = make_split(dataset, val_fraction=0.15, test_fraction=0.15, seed=0)
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

from training.data import Dataset, duplicate_groups
from training.errors import DataError

SPLITS = ("train", "val", "test")


def load_split(path: str | Path, dataset: Dataset) -> dict[str, list[tuple[str, str]]]:
    """Reads ``{"splits": {"train": [...], "val": [...], "test": [...]}}`` (or the lists at top level).

    Returns:
        split name -> list of (relative path, label), labels taken from the dataset.

    Raises:
        DataError: unreadable file, a missing list, or paths absent from the data folder.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read split file: {err}") from None
    lists = data.get("splits", data) if isinstance(data, dict) else None
    if not isinstance(lists, dict) or any(not isinstance(lists.get(name), list) for name in SPLITS):
        raise DataError(f"{path}: a split file needs lists 'train', 'val' and 'test'")
    # Other keys beside the lists are notes ("seed", "classes"); another list of photos is a typo
    # ("holdout", "tset") whose photos would silently be used by no split.
    odd_lists = sorted(key for key, value in lists.items() if key not in SPLITS and (
        lists is data.get("splits") or isinstance(value, list) and any("/" in str(entry) for entry in value)))
    if odd_lists:
        raise DataError(f"{path}: unknown entry {', '.join(map(repr, odd_lists))} beside the lists (a split file "
                        f"has 'train', 'val' and 'test')")
    for name in SPLITS:
        odd = [entry for entry in lists[name] if not isinstance(entry, str) or not entry.strip()]
        if odd:
            raise DataError(f"{path}: '{name}' holds {len(odd)} entries that are not file paths: "
                            f"{first_names([repr(entry) for entry in odd])}")
    # "./glass/a.jpg" and "glass\a.jpg" (a split written on Windows) name "glass/a.jpg".
    lists = {name: [PurePosixPath(entry.replace("\\", "/")).as_posix() for entry in lists[name]] for name in SPLITS}
    repeated = sorted(rel for name in SPLITS for rel, count in Counter(lists[name]).items() if count > 1)
    if repeated:
        raise DataError(f"{path}: {len(repeated)} files are listed twice in one list (they would weigh double): "
                        f"{first_names(repeated)}")
    label_of = dict(dataset.items)
    unreadable = set(dataset.unreadable)
    absent = [rel for name in SPLITS for rel in lists[name] if rel not in label_of and rel not in unreadable]
    if absent:
        raise DataError(f"{path}: {len(absent)} files named in the split are not in {dataset.root}: {first_names(absent)}")
    in_two = sorted(rel for rel, count in Counter(rel for name in SPLITS for rel in lists[name]).items() if count > 1)
    if in_two:
        raise DataError(f"{path}: {len(in_two)} files are in more than one of train/val/test: {first_names(in_two)}")
    return {name: [(rel, label_of[rel]) for rel in lists[name] if rel in label_of] for name in SPLITS}


def unlisted(split: dict[str, list[tuple[str, str]]], dataset: Dataset) -> list[tuple[str, str]]:
    """The dataset's photos that no list of a split file names (e.g. the bin's own, added later)."""
    listed = {rel for name in SPLITS for rel, _ in split[name]}
    return [(rel, label) for rel, label in dataset.items if rel not in listed]


def add_to_train(root: Path, split: dict[str, list[tuple[str, str]]],
                 extra: list[tuple[str, str]]) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """``split`` with ``extra`` photos added to train, except copies of a val or test photo (a leak).

    Returns:
        the new split and the extra photos left out as copies, for the caller to name.
    """
    held_out = {rel for name in ("val", "test") for rel, _ in split[name]}
    groups = duplicate_groups(root, sorted(held_out) + [rel for rel, _ in extra])
    copies = sorted(rel for group in groups if held_out & set(group) for rel in group if rel not in held_out)
    left_out = set(copies)
    added = [(rel, label) for rel, label in extra if rel not in left_out]
    return {**split, "train": split["train"] + added}, copies


def place_unlisted(split: dict[str, list[tuple[str, str]]], dataset: Dataset,
                   mode: str) -> tuple[dict[str, list[tuple[str, str]]], list[str]]:
    """A split file's split with the photos it does not name left out (``ignore``) or trained on
    (``train``), and the warning lines that say so."""
    extra = unlisted(split, dataset)
    if not extra:
        return split, []
    if mode != "train":
        return split, [f"warning: {len(extra)} photos in {dataset.root} are not in the split file and are not "
                       f"used, e.g. {extra[0][0]} (--unlisted train adds them to train)"]
    split, copies = add_to_train(dataset.root, split, extra)
    if not copies:
        return split, [f"note: training on {_photos(len(extra))} the split file does not name"]
    return split, [f"note: training on {len(extra) - len(copies)} of the {_photos(len(extra))} the split file does "
                   f"not name",
                   f"warning: leaving out the other {len(copies)}, {'a copy' if len(copies) == 1 else 'copies'} of a "
                   f"val or test photo: {first_names(copies)}"]


def _photos(count: int) -> str:
    return f"{count} photo{'' if count == 1 else 's'}"


def first_names(names: list[str], shown: int = 5) -> str:
    """The first few names of a long list, for a one-line error."""
    return ", ".join(names[:shown]) + (f" (+{len(names) - shown} more)" if len(names) > shown else "")


def copies_across_splits(root: Path, split: dict[str, list[tuple[str, str]]]) -> list[list[str]]:
    """Groups of byte-identical files that sit in different splits (a leak a split file can carry)."""
    where = {rel: name for name in SPLITS for rel, _ in split[name]}
    return [group for group in duplicate_groups(root, list(where)) if len({where[rel] for rel in group}) > 1]


def make_split(dataset: Dataset, val_fraction: float = 0.15, test_fraction: float = 0.15,
               seed: int = 0) -> dict[str, list[tuple[str, str]]]:
    """A stratified split that keeps byte-identical files together.

    Groups of identical files are placed as one unit, per class; a group whose files carry
    different labels goes to train.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError("split: val_fraction and test_fraction must be in [0, 1) and sum below 1")
    label_of = dict(dataset.items)
    groups = duplicate_groups(dataset.root, list(label_of))
    grouped = {rel for group in groups for rel in group}
    units = [[rel] for rel in label_of if rel not in grouped] + groups
    by_label = defaultdict(list)
    split = {name: [] for name in SPLITS}
    for unit in units:
        labels = {label_of[rel] for rel in unit}
        if len(labels) > 1:
            split["train"].extend(unit)
        else:
            by_label[labels.pop()].append(sorted(unit))
    rng = random.Random(seed)
    for label in sorted(by_label):
        class_units = sorted(by_label[label])
        rng.shuffle(class_units)
        total = sum(len(u) for u in class_units)
        want = {"test": round(total * test_fraction), "val": round(total * val_fraction)}
        for unit in class_units:
            name = next((n for n in ("test", "val") if want[n] >= len(unit)), "train")
            if name != "train":
                want[name] -= len(unit)
            split[name].extend(unit)
    return {name: [(rel, label_of[rel]) for rel in sorted(split[name])] for name in SPLITS}


def save_split(split: dict[str, list[tuple[str, str]]], path: str | Path, data: str) -> None:
    """Writes the split used by a run, with each file's label (after label mapping)."""
    payload = {
        "data": data,
        "data_resolved": str(Path(data).resolve()),  # for tools run from another folder (training.evaluate)
        "splits": {name: [rel for rel, _ in split[name]] for name in SPLITS},
        "labels": {rel: label for name in SPLITS for rel, label in split[name]},
    }
    Path(path).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
