"""Class-folder datasets: discovery, label maps, and the ``check`` report.

A dataset is ``ROOT/<class>/<image>`` with jpg, jpeg, png, bmp or webp files. Labels are the
sorted folder names unless a label list or a label map (YAML ``{source: bin_class}``) says
otherwise. Unreadable files are listed and skipped everywhere.

Usage:
    python -m training.data check ../shared/data/trashnet
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from training.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class Dataset:
    """Images of a class-folder dataset with their (mapped) labels."""

    root: Path
    labels: list[str]
    items: list[tuple[str, str]]                 # (path relative to root, label)
    unreadable: list[str] = field(default_factory=list)

    def counts(self) -> Counter:
        return Counter(label for _, label in self.items)

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


LABEL_MAP_FILE = "label_map.yaml"  # the copy of --label-map that training.fit keeps in a run folder


def load_label_map(path: str | Path | None) -> dict[str, str]:
    """Reads a YAML label map ``{source_class: bin_class}``; ``{}`` when no path is given."""
    if not path:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise DataError(f"{path}: cannot read label map: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise DataError(f"{path}: a label map is a YAML mapping source_class: bin_class")
    return {str(k): v for k, v in data.items()}


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def discover(root: str | Path, labels: list[str] | None = None, label_map: dict[str, str] | None = None,
             verify: bool = False) -> Dataset:
    """Finds the images of a class-folder dataset.

    Args:
        root: the dataset folder.
        labels: the class order to use; default the sorted (mapped) folder names.
        label_map: source folder name -> class name (merges or renames classes).
        verify: decode every image now and list the unreadable ones (slower).

    Raises:
        DataError: missing folder, no class folders, a class with no images, a label with no folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    label_map = label_map or {}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class folders (expected ROOT/<class>/<image>)")
    items, unreadable = [], []
    for folder in folders:
        files = image_files(folder)
        if not files:
            raise DataError(f"{folder}: class folder has no images")
        label = label_map.get(folder.name, folder.name)
        for path in files:
            rel = path.relative_to(root).as_posix()
            if verify and not is_readable(path):
                unreadable.append(rel)
                continue
            items.append((rel, label))
    found = sorted({label for _, label in items})
    if labels:
        missing = [label for label in labels if label not in found]
        if missing:
            raise DataError(f"{root}: no images for labels {', '.join(missing)}")
        extra = [label for label in found if label not in labels]
        if extra:
            raise DataError(f"{root}: folders {', '.join(extra)} are not in --labels (map or remove them)")
    return Dataset(root, list(labels or found), items, unreadable)


# What TensorFlow's decoders read; Pillow reads more (a TIFF named .jpg would pass Pillow and then
# stop training in its first epoch). MPO is a JPEG with extra pictures appended (phones' Ultra HDR,
# many cameras): it decodes as the JPEG it starts with.
TRAINABLE_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP"}


def trainable(image) -> bool:
    """True when TensorFlow decodes this opened Pillow image to RGB: a trainable format, and for WebP
    a single RGB picture (TensorFlow refuses WebP with transparency or animation as 3-channel)."""
    if image.format not in TRAINABLE_FORMATS:
        return False
    return image.format != "WEBP" or (image.mode == "RGB" and getattr(image, "n_frames", 1) == 1)


def is_readable(path: Path) -> bool:
    """True when Pillow can fully decode the file and TensorFlow can too (truncated files or
    other formats fail here, not mid-epoch)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return trainable(image)
    except Exception:  # Pillow raises many kinds for broken files; all mean "skip it"
        return False


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def duplicate_groups(root: Path, paths: list[str]) -> list[list[str]]:
    """Groups of byte-identical files (each group has two or more paths)."""
    by_digest = defaultdict(list)
    for rel in paths:
        by_digest[file_digest(root / rel)].append(rel)
    return [sorted(group) for group in by_digest.values() if len(group) > 1]


def check_report(root: str | Path, label_map: dict[str, str] | None = None) -> str:
    """The ``check`` report: counts, imbalance, unreadable files, duplicates, size statistics."""
    from PIL import Image
    from tqdm import tqdm

    dataset = discover(root, label_map=label_map, verify=False)
    readable, unreadable, sizes = [], [], Counter()
    for rel, label in tqdm(dataset.items, desc="checking images", unit="img", file=sys.stderr):
        try:
            with Image.open(dataset.root / rel) as image:
                image.load()
                usable, size = trainable(image), image.size
        except Exception:  # Pillow raises many kinds for broken files; all mean "skip it"
            usable = False
        if usable:  # the same rule as is_readable, which training applies
            sizes[size] += 1
            readable.append((rel, label))
        else:
            unreadable.append(rel)
    counts = Counter(label for _, label in readable)
    label_of = dict(readable)
    groups = duplicate_groups(dataset.root, [rel for rel, _ in readable])
    lines = [f"dataset: {dataset.root}", f"images: {len(readable)} readable, {len(unreadable)} unreadable",
             "", "| class | images |", "|---|---|"]
    lines += [f"| {label} | {counts[label]} |" for label in dataset.labels]
    if counts:
        lines += ["", f"imbalance ratio (largest / smallest class): {max(counts.values()) / max(1, min(counts.values())):.2f}"]
    lines += ["", f"unreadable or corrupt files ({len(unreadable)}, skipped everywhere):"]
    lines += [f"  {rel}" for rel in unreadable] or ["  none"]
    cross = [g for g in groups if len({label_of[p] for p in g}) > 1]
    lines += ["", f"byte-identical duplicate groups: {len(groups)}; carrying two labels: {len(cross)}"]
    lines += [f"  {' = '.join(g)}" for g in cross]
    lines += ["", "image sizes (width x height: count):"]
    lines += [f"  {w}x{h}: {n}" for (w, h), n in sizes.most_common(10)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="report counts, imbalance, corrupt files and duplicates")
    check.add_argument("root", help="dataset folder: ROOT/<class>/<image>")
    check.add_argument("--label-map", help="YAML mapping source_class: bin_class")
    args = parser.parse_args(argv)
    try:
        print(check_report(args.root, load_label_map(args.label_map)))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
