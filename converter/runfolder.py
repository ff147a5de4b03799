"""The run folder ``training.fit`` writes, as the converter reads it (no TensorFlow here).

A run folder holds ``model.keras``, ``labels.txt``, ``split.json`` (paths relative to the
data folder; the class of a file is ``split["labels"][path]`` when that mapping is there,
else the path's first component), ``config.yaml`` and ``metrics.json``.

Usage:
    from converter.runfolder import load_run
    run = load_run("runs/efflite0")
    data = run.resolve_data_dir(None)
    test_items = run.items("test", data)
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converter import ConverterError
from edge.bundle import normal_label, read_labels
from edge.errors import BundleError

MODEL_FILE = "model.keras"
FLOAT_REFERENCE_FILE = "model_float32.tflite"
DATA_ENV = "SMARTBIN_DATA"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Item:
    """One photo of a split: where it is, its path as the split names it, and its class index."""

    path: Path
    name: str
    label_index: int


@dataclass(frozen=True)
class RunFolder:
    """A validated run folder.

    Usage:
        run = load_run("runs/efflite0")
        print(run.labels, run.backbone, run.image_size)
    """

    path: Path
    labels: tuple[str, ...]
    splits: dict[str, list[str]]
    data_hint: str = ""
    data_resolved: str = ""  # split.json's absolute form of data_hint, as training resolved it
    file_labels: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def float_reference_path(self) -> Path:
        """Where the float32 ``.tflite`` of this run lives (``bench`` compares against it)."""
        return self.path / FLOAT_REFERENCE_FILE

    @property
    def backbone(self) -> str:
        return str(self.config.get("backbone") or "unknown")

    @property
    def image_size(self) -> int | None:
        size = self.config.get("image_size")
        return int(size) if isinstance(size, (int, float)) and size > 0 else None

    def folder_labels(self) -> dict[str, str]:
        """Source class folders whose photos train another label (``label_map.yaml``), folder -> label.

        Goes into the manifest so that a replay of the source folders scores the merged labels. A
        folder whose files carry different labels (a hand-made split.json) is left out: no single
        label is its truth.
        """
        labels_of: dict[str, set[str]] = {}
        for entry in (entry for entries in self.splits.values() for entry in entries):
            if "/" in entry.replace("\\", "/"):
                # Keyed and compared in NFC, as the bin compares replay folders: a folder named on a Mac
                # (decomposed "ü") is its own NFC label, not a mapping.
                labels_of.setdefault(normal_label(class_folder(entry)), set()).add(normal_label(self.label_of(entry)))
        as_written = {normal_label(label): label for label in self.labels}  # the manifest's own spelling
        return {folder: as_written.get(label, label) for folder, labels in sorted(labels_of.items())
                if len(labels) == 1 and folder not in labels for label in labels}

    def label_of(self, name: str) -> str:
        """The class of a split entry after label mapping."""
        return self.file_labels.get(name) or class_folder(name)

    def resolve_data_dir(self, data: str | os.PathLike | None) -> Path:
        """Finds the data folder: ``--data``, else split.json's ``data``, else ``$SMARTBIN_DATA``.

        split.json's absolute ``data_resolved`` is tried first. A relative ``data`` was relative
        to where training ran: it is tried as given, then relative to the run folder's parent, then
        to its grandparent (a run in ``runs/NAME`` trained from the folder that holds ``runs/``), so
        converting works from any directory. The run folder itself is never taken for the data
        (a run named after its data folder, converted from ``runs/``).

        Raises:
            ConverterError: no candidate is an existing folder.
        """
        if data is not None:
            folder = Path(data)
            if not folder.is_dir():
                raise ConverterError(f"--data {folder}: data folder not found")
            return folder
        tried = []
        if self.data_hint:
            hint = Path(self.data_hint)
            candidates = [hint] if hint.is_absolute() else [
                hint, self.path.parent / hint, self.path.resolve().parent.parent / hint]
            if self.data_resolved:
                candidates.insert(0, Path(self.data_resolved))
            for folder in candidates:
                if folder.is_dir() and folder.resolve() != self.path.resolve():
                    return folder
                if str(folder) not in tried:  # the recorded absolute path is often the hint itself
                    tried.append(str(folder))
        env = os.environ.get(DATA_ENV)
        if env:
            if Path(env).is_dir():
                return Path(env)
            tried.append(f"${DATA_ENV}={env}")
        where = f" (tried {', '.join(tried)})" if tried else ""
        raise ConverterError(f"{self.path}: cannot find the data folder{where}; pass --data DIR or set {DATA_ENV}")

    def items(self, split: str, data_dir: Path) -> list[Item]:
        """The photos of one split with their class indices, in split order."""
        index = {label: i for i, label in enumerate(self.labels)}
        return [Item(data_dir / name, name, index[self.label_of(name)]) for name in self.splits.get(split, [])]

    def check_data(self, data_dir: Path, splits=("train", "test")) -> None:
        """Checks that the data folder is the one this run was trained on.

        Raises:
            ConverterError: class folders that do not match ``labels.txt``, or split files that are missing.
        """
        folders = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        # Source class folders may differ from labels.txt when training merged classes with a label map.
        needed = sorted({class_folder(name) for split in splits for name in self.splits.get(split, [])})
        if any(folder not in folders for folder in needed):
            expected = (f"labels.txt names {', '.join(self.labels)}" if set(needed) <= set(self.labels)
                        else f"the run's split uses class folders {', '.join(needed)}")
            raise ConverterError(f"{data_dir}: data folder has classes {', '.join(folders) or '(none)'} but {expected}")
        absent = [name for split in splits for name in self.splits.get(split, []) if not (data_dir / name).is_file()]
        if absent:
            raise ConverterError(
                f"{data_dir}: {len(absent)} file(s) of the run's split are missing, e.g. {absent[0]} "
                f"(is this the data folder the run was trained on?)"
            )


def load_run(path: str | os.PathLike) -> RunFolder:
    """Reads and validates a run folder.

    Raises:
        ConverterError: the folder, ``model.keras``, ``config.yaml``, ``labels.txt`` or ``split.json`` is
            missing or invalid.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ConverterError(f"{folder}: run folder not found")
    if not (folder / MODEL_FILE).is_file():
        raise ConverterError(f"{folder}: no {MODEL_FILE} (is this a run folder written by training.fit?)")
    if not (folder / "config.yaml").is_file():
        # It says whether the run is a final fit, which trained on its val photos: the gate must know.
        raise ConverterError(f"{folder}: no config.yaml (is this a run folder written by training.fit?)")
    if not (folder / "metrics.json").is_file():
        # training.fit writes metrics.json last: without it the run was stopped or is still training,
        # and model.keras is only some epoch's checkpoint.
        raise ConverterError(f"{folder}: not a finished run (metrics.json missing: training was stopped or is "
                             f"still running); convert a finished run")
    try:  # checked before TensorFlow starts; Keras would say "File not found" for a corrupt file
        with open(folder / MODEL_FILE, "rb") as model_file:
            valid = zipfile.is_zipfile(model_file)
    except OSError as err:
        raise ConverterError(f"{folder / MODEL_FILE}: cannot read ({err.strerror})") from None
    if not valid:
        raise ConverterError(f"{folder / MODEL_FILE}: not a valid .keras file (truncated or corrupt?)")
    try:
        labels = read_labels(folder / "labels.txt")
    except BundleError as err:
        raise ConverterError(f"{folder}: {err}") from None
    split = _read_json(folder / "split.json")
    splits = split.get("splits")
    if not isinstance(splits, dict) or not all(
        isinstance(splits.get(name, []), list) for name in SPLITS
    ):
        raise ConverterError(f"{folder}/split.json: needs \"splits\" with lists train/val/test")
    file_labels = split.get("labels") or {}
    if not isinstance(file_labels, dict):
        raise ConverterError(f"{folder}/split.json: \"labels\" must map paths to labels")
    run = RunFolder(
        path=folder,
        labels=labels,
        splits={name: [str(entry) for entry in splits.get(name, [])] for name in SPLITS},
        data_hint=str(split.get("data") or ""),
        data_resolved=str(split.get("data_resolved") or ""),
        file_labels={str(k): str(v) for k, v in file_labels.items()},
        config=_read_yaml(folder / "config.yaml"),
        metrics=_read_optional_json(folder / "metrics.json"),
    )
    for name in ("train", "test"):
        if not run.splits[name]:
            raise ConverterError(f"{folder}/split.json: the {name} split is empty")
    unknown = sorted({run.label_of(entry) for entries in run.splits.values() for entry in entries} - set(labels))
    if unknown:
        raise ConverterError(
            f"{folder}: split.json has classes {', '.join(unknown)} that labels.txt does not name"
        )
    return run


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConverterError(f"{path}: missing") from None
    except (OSError, ValueError) as err:
        raise ConverterError(f"{path}: unreadable: {err}") from None
    if not isinstance(data, dict):
        raise ConverterError(f"{path}: must be a JSON object")
    return data


def _read_optional_json(path: Path) -> dict[str, Any]:
    # metrics.json only decorates the manifest, so a missing one is not an error.
    return _read_json(path) if path.is_file() else {}


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConverterError(f"{path}: unreadable: {err}".splitlines()[0]) from None
    except yaml.YAMLError as err:
        from edge.yaml_unique import syntax_error_text

        raise ConverterError(f"{path}: {syntax_error_text(err)}") from None
    return data if isinstance(data, dict) else {}


def class_folder(entry: str) -> str:
    """The first folder of a split entry (``glass/glass_1.jpg`` -> ``glass``), either slash."""
    return entry.replace("\\", "/").split("/", 1)[0]
