"""Class-folder datasets: discovery, label maps, and the ``check`` report.

A dataset is ``ROOT/<class>/<image>`` with jpg, jpeg, png, bmp or webp files (images in
subfolders of a class folder count for that class). Labels are the sorted folder names unless a
label list or a label map (YAML ``{source: bin_class}``) says otherwise. Unreadable files are
listed and skipped everywhere; a class folder without one readable image is an error.

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

from edge.bundle import normal_label
from edge.cli_args import path_argument
from edge.yaml_unique import DuplicateKeyError, load_unique, syntax_error_text
from training.errors import DataError

MAX_LISTED_GROUPS = 50  # duplicate groups the check report lists one by one


@dataclass
class Dataset:
    """Images of a class-folder dataset with their (mapped) labels."""

    root: Path
    labels: list[str]
    items: list[tuple[str, str]]                 # (path relative to root, label)
    unreadable: list[str] = field(default_factory=list)
    unused_map_keys: list[str] = field(default_factory=list)  # label-map sources that name no folder (typos?)
    empty_folders: list[str] = field(default_factory=list)    # names; only with allow_empty (the check report)
    other_formats: list[str] = field(default_factory=list)    # photos in formats not read (.heic, .gif, ...)

    def counts(self) -> Counter:
        return Counter(label for _, label in self.items)

    def label_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.labels)}


LABEL_MAP_FILE = "label_map.yaml"  # the copy of --label-map that training.fit keeps in a run folder


def load_label_map(path: str | Path | None) -> dict[str, str]:
    """Reads a YAML label map ``{source_class: bin_class}``; ``{}`` when no path is given.

    Names are returned in Unicode NFC (``edge.bundle.normal_label``). Raises ``DataError`` for anything that would
    only fail hours later in the converter: a target that is not a valid label (empty, padded with
    spaces, several lines) or a source YAML did not read as text (``yes:`` is a boolean).
    """
    if not path:
        return {}
    try:
        data = load_unique(Path(path).read_text(encoding="utf-8")) or {}
    except DuplicateKeyError as err:
        raise DataError(f"{path}: {err}; YAML would silently keep only the last target") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: label map is not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read label map: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise DataError(f"{path}: label map: {syntax_error_text(err)}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a label map is a YAML mapping source_class: bin_class")
    mapping = {}
    for source, target in data.items():
        if isinstance(source, bool) or source is None:
            first, words, read_as = {None: ("null", "null or ~", "null"), True: ("yes", "yes, on or true", "true"),
                                     False: ("no", "no, off or false", "false")}[source]
            raise DataError(f"{path}: a folder name written {words} is read by YAML as {read_as}, "
                            f"not text: quote it ('{first}': ...)")
        if not isinstance(target, str) or not target.strip() or target != target.strip() or "\n" in target:
            raise DataError(f"{path}: {source}: {target!r} is not a class name (text, no leading or trailing "
                            f"spaces, one line)")
        key = normal_label(str(source))
        if key in mapping:  # "1" and 1, or a composed and a decomposed "ü": YAML saw two keys, a folder is one
            raise DataError(f"{path}: {source!r} names the folder {key!r} again, as another key did before it")
        mapping[key] = normal_label(target)
    return mapping


def invalid_labels(labels: list[str]) -> list[str]:
    """The labels a model bundle cannot carry (blank, padded with spaces, several lines): folder
    names that would train for hours and then be refused by the converter."""
    from edge.bundle import check_labels
    from edge.errors import BundleError

    invalid = []
    for label in labels:
        try:
            check_labels([label])
        except BundleError:
            invalid.append(label)
    return invalid


def image_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """A class folder's photos, found as the bin's replay finds them (``edge.imaging.find_photos``):
    subfolders and symlinked folders included, hidden files and folders and ``__MACOSX`` left out;
    and beside them the photos in formats the bin does not read."""
    from edge.imaging import photos_and_others

    return photos_and_others(folder)


def discover(root: str | Path, labels: list[str] | None = None, label_map: dict[str, str] | None = None,
             verify: bool = False, allow_empty: bool = False) -> Dataset:
    """Finds the images of a class-folder dataset.

    Args:
        root: the dataset folder.
        labels: the class order to use; default the sorted (mapped) folder names.
        label_map: source folder name -> class name (merges or renames classes).
        verify: decode every image now and list the unreadable ones (slower).
        allow_empty: list class folders without (readable) images in ``empty_folders`` instead of raising.

    Raises:
        DataError: missing folder, no class folders, a class folder with no (readable) images, a label
            with no folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: {'is a file, not a data folder' if root.exists() else 'data folder not found'}")
    label_map = label_map or {}
    from edge.imaging import skipped_name

    folders = sorted(p for p in root.iterdir() if p.is_dir() and not skipped_name(p.name))
    if not folders:
        raise DataError(f"{root}: no class folders (expected ROOT/<class>/<image>)")
    from edge.imaging import other_format_summary

    items, unreadable, empty, others = [], [], [], []
    for folder in folders:
        files, not_read = image_files(folder)
        others += [path.relative_to(root).as_posix() for path in not_read]
        label = label_map.get(normal_label(folder.name), normal_label(folder.name))
        kept = 0
        for path in files:
            rel = path.relative_to(root).as_posix()
            if verify and not is_readable(path):
                unreadable.append(rel)
                continue
            items.append((rel, label))
            kept += 1
        if not kept:
            problem = "class folder has no images" if not files else \
                f"class folder has no readable images ({len(files)} unreadable)"
            if not files and not_read:
                problem += f" ({other_format_summary(not_read)} in formats training does not read: " \
                           "convert them to JPEG or PNG)"
            if not allow_empty:
                raise DataError(f"{folder}: {problem}")
            empty.append(folder.name)
    found = sorted({label for _, label in items})
    labels = [normal_label(label) for label in labels] if labels else labels
    if labels:
        missing = [label for label in labels if label not in found]
        if missing:
            raise DataError(f"{root}: no images for labels {', '.join(missing)}")
        extra = [label for label in found if label not in labels]
        if extra:
            raise DataError(f"{root}: folders {', '.join(extra)} are not in the labels given (--labels or the "
                            f"config's labels: map or remove them)")
    unused = sorted(set(label_map) - {normal_label(folder.name) for folder in folders})
    return Dataset(root, list(labels or found), items, unreadable, unused, empty, others)


def readable_size(path: Path) -> tuple[int, int] | None:
    """(width, height), upright, of a photo training can use, else None: one the bin's decoder
    reads (``edge.imaging``, within its pixel limit) and that is whole (a JPEG or PNG without its
    end marker, or a short WebP, decodes with a grey or missing part)."""
    from edge import image_header, imaging

    try:
        data = imaging.read_photo_bytes(path)  # not a pipe, device or 50 GB file named *.jpg
        kind = image_header.sniff(data)
        if kind and image_header.is_truncated(data, kind):
            return None
        height, width = imaging.decode_image(data, max_pixels=imaging.MAX_DECODED_PIXELS).shape[:2]
    except (OSError, ValueError, MemoryError):
        return None
    return width, height


def is_readable(path: Path) -> bool:
    """True when training can decode the file (truncated files or other formats fail here, not mid-epoch)."""
    return readable_size(path) is not None


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:  # in chunks: a huge file named *.jpg must not fill the memory
        return hashlib.file_digest(handle, "sha256").hexdigest()


def duplicate_groups(root: Path, paths: list[str]) -> list[list[str]]:
    """Groups of byte-identical files (each group has two or more paths)."""
    by_digest = defaultdict(list)
    for rel in paths:
        by_digest[file_digest(root / rel)].append(rel)
    return [sorted(group) for group in by_digest.values() if len(group) > 1]


def check_report(root: str | Path, label_map: dict[str, str] | None = None) -> tuple[str, bool]:
    """The ``check`` report (counts, imbalance, unreadable files, duplicates, size statistics) and
    whether training could start on this folder."""
    from tqdm import tqdm

    dataset = discover(root, label_map=label_map, verify=False, allow_empty=True)
    readable, unreadable, sizes = [], [], Counter()
    for rel, label in tqdm(dataset.items, desc="checking images", unit="img", file=sys.stderr):
        size = readable_size(dataset.root / rel)  # the rule is_readable applies when training
        if size is not None:
            sizes[size] += 1
            readable.append((rel, label))
        else:
            unreadable.append(rel)
    counts = Counter(label for _, label in readable)
    label_of = dict(readable)
    groups = duplicate_groups(dataset.root, [rel for rel, _ in readable])
    lines = [f"dataset: {dataset.root}", f"images: {len(readable)} readable, {len(unreadable)} unreadable",
             "", "| class | images |", "|---|---|"]
    # Empty folders' classes too: they are the ones that stop training.
    empty_labels = {(label_map or {}).get(normal_label(name), normal_label(name)) for name in dataset.empty_folders}
    shown = sorted(set(dataset.labels) | empty_labels)
    lines += [f"| {label} | {counts[label]} |" for label in shown]
    smallest = min((counts[label] for label in shown), default=0)
    if counts:
        ratio = f"{max(counts.values()) / smallest:.2f}" if smallest else "infinite (a class has no readable image)"
        lines += ["", f"imbalance ratio (largest / smallest class): {ratio}"]
    # Per source folder, as training judges it: a folder whose every file is unreadable stops training.
    readable_in = Counter(rel.split("/", 1)[0] for rel, _ in readable)
    unreadable_in = Counter(rel.split("/", 1)[0] for rel in unreadable)
    refused = [f"{folder}: class folder has no images" for folder in dataset.empty_folders]
    refused += [f"{folder}: class folder has no readable images ({n} unreadable)"
                for folder, n in sorted(unreadable_in.items()) if not readable_in[folder]]
    refused += [f"{label!r}: not a class name a model can carry (spaces at either end, or a line break): "
                f"rename the folder or map it with --label-map" for label in invalid_labels(shown)]
    single = one_class_problem(dataset.root, shown, label_map)
    if single:
        refused.append(single)
    problems = refused + [f"label map: {key!r} names no folder" for key in dataset.unused_map_keys]
    if problems:
        lines += ["", "problems:"]
        lines += [f"  {problem}{' (training stops here)' if problem in refused else ''}" for problem in problems]
    from edge.imaging import MAX_DECODED_PIXELS

    lines += ["", f"unreadable files: missing, corrupt, or over the bin's {MAX_DECODED_PIXELS // 1_000_000} "
                  f"megapixels ({len(unreadable)}, skipped everywhere):"]
    lines += [f"  {rel}" for rel in unreadable] or ["  none"]
    if dataset.other_formats:
        lines += ["", f"files in formats training does not read ({len(dataset.other_formats)}, left out; "
                      "convert them to JPEG or PNG):"]
        lines += [f"  {rel}" for rel in dataset.other_formats[:MAX_LISTED_GROUPS]]
        if len(dataset.other_formats) > MAX_LISTED_GROUPS:
            lines.append(f"  ... and {len(dataset.other_formats) - MAX_LISTED_GROUPS} more")
    cross = [g for g in groups if len({label_of[p] for p in g}) > 1]
    lines += ["", f"byte-identical duplicate groups: {len(groups)}; carrying two labels: {len(cross)} (marked !)"]
    lines += [f"  {'! ' if g in cross else ''}{' = '.join(g)}" for g in groups[:MAX_LISTED_GROUPS]]
    if len(groups) > MAX_LISTED_GROUPS:
        lines.append(f"  ... and {len(groups) - MAX_LISTED_GROUPS} more groups")
    lines += ["", "image sizes:"]
    if sizes:
        widths = sorted(w for (w, _), n in sizes.items() for _ in range(n))
        heights = sorted(h for (_, h), n in sizes.items() for _ in range(n))
        for name, values in (("width", widths), ("height", heights)):
            lines.append(f"  {name}: min {values[0]}, median {values[len(values) // 2]}, max {values[-1]} px")
        lines.append("  most common (width x height: count):")
        lines += [f"    {w}x{h}: {n}" for (w, h), n in sizes.most_common(10)]
    return "\n".join(lines), not refused


def one_class_problem(root, labels, label_map: dict[str, str] | None = None) -> str | None:
    """Why a dataset of exactly one class cannot train a classifier, or None (none at all is
    ``discover``'s error)."""
    if len(set(labels)) != 1:
        return None
    if labels[0] in (label_map or {}).values():
        why = f"the label map merges every folder into {labels[0]!r}"
    else:
        why = f"are the class folders one level deeper, in {Path(root) / labels[0]}/<class>/?"
    return f"{root}: only one class, {labels[0]!r}: a classifier needs two or more ({why})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="report counts, imbalance, corrupt files and duplicates; "
                                         "exit 1 when training could not start (a class without a "
                                         "readable image, one class only, a folder name no model can carry)")
    check.add_argument("root", type=path_argument, help="dataset folder: ROOT/<class>/<image>")
    check.add_argument("--label-map", help="YAML mapping source_class: bin_class")
    args = parser.parse_args(argv)
    try:
        report, trainable_here = check_report(args.root, load_label_map(args.label_map))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(report)
    return 0 if trainable_here else 1


if __name__ == "__main__":
    sys.exit(main())
