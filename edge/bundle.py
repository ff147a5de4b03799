"""The model bundle contract: what ``converter`` writes and ``edge`` reads.

A bundle is a folder holding a LiteRT model file, ``labels.txt`` (one label a line,
in output order) and ``manifest.json``. This module is standard-library only so that
``training``, ``converter`` and ``edge`` can all import it without pulling in
TensorFlow or LiteRT.

Usage:
    from edge.bundle import load_bundle
    bundle = load_bundle("models/trashnet-efflite0-int8")
    print(bundle.labels, bundle.manifest.input.height)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import functools
import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.errors import BundleError

SCHEMA_VERSION = 1
# Version 2 adds ``label_map``. A manifest says 2 only when it has one, so a bin running an older
# smartbin still reads every other bundle and refuses a mapped one with a clear message.
LABEL_MAP_SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
MANIFEST_FILE = "manifest.json"
LABELS_FILE = "labels.txt"
QUANTIZATION_MODES = ("int8", "float16", "dynamic", "float32")
TENSOR_DTYPES = ("uint8", "int8", "float32")


@dataclass(frozen=True)
class InputSpec:
    """How a camera frame becomes the model's input tensor.

    ``stretch`` means the whole image is resized to ``width`` x ``height`` with
    bilinear interpolation, no crop and no padding. The model itself rescales
    pixels, so a uint8 input takes raw RGB (``scale`` 1, ``zero_point`` 0).
    """

    height: int
    width: int
    dtype: str = "uint8"
    color_order: str = "RGB"
    scale: float = 1.0
    zero_point: int = 0
    resize: str = "stretch"
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class OutputSpec:
    """What the model's output tensor holds; dequantise with ``scale * (q - zero_point)``."""

    dtype: str = "uint8"
    scale: float = 1.0 / 256.0
    zero_point: int = 0
    meaning: str = "probabilities"


@dataclass(frozen=True)
class Manifest:
    """Everything the device needs to know about a model file, and the proof of its accuracy."""

    labels: tuple[str, ...]
    model_file: str
    sha256: str
    input: InputSpec
    output: OutputSpec
    backbone: str
    quantization: str
    created_at: str
    source_run: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    edgetpu: dict[str, Any] | None = None
    # Source class folder -> label, for runs trained with a label map: a replay of the source
    # folders scores each photo against the label its folder was merged into.
    label_map: dict[str, str] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def label_of_folder(self, folder: str) -> str:
        """The label a source class folder trains (through ``label_map``, compared in NFC), else the
        folder's own name in NFC: a replayed photo's truth."""
        name = normal_label(folder)
        return self._label_map_nfc.get(name, name)

    @functools.cached_property
    def _label_map_nfc(self) -> dict[str, str]:
        # Made once per manifest, not once per item.
        return {normal_label(folder): label for folder, label in self.label_map.items()}

    def to_dict(self) -> dict[str, Any]:
        """Returns the manifest as JSON-ready data (labels as a list)."""
        data = dataclasses.asdict(self)
        data["labels"] = list(self.labels)
        if self.label_map:
            data["schema_version"] = max(self.schema_version, LABEL_MAP_SCHEMA_VERSION)
        else:
            del data["label_map"]  # most bundles have none; their manifests stay as version 1
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        """Builds and validates a manifest from parsed JSON.

        Raises:
            BundleError: a key is missing, unknown, or has a bad value.
        """
        if not isinstance(data, dict):
            raise BundleError("manifest: must be a JSON object")
        version = data.get("schema_version")
        if version not in SUPPORTED_SCHEMA_VERSIONS:
            raise BundleError(
                f"manifest: unknown schema_version {version!r} "
                f"(this smartbin reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))})"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - data.keys())
        if missing:
            raise BundleError(f"manifest: missing keys {', '.join(missing)}")
        unknown = sorted(data.keys() - known)
        if unknown:
            raise BundleError(f"manifest: unknown keys {', '.join(unknown)}")
        values = dict(data)
        values["labels"] = tuple(data["labels"]) if isinstance(data["labels"], list) else data["labels"]
        values["input"] = _spec(InputSpec, data["input"], "input")
        values["output"] = _spec(OutputSpec, data["output"], "output")
        manifest = cls(**values)
        manifest.validate()
        return manifest

    def validate(self) -> None:
        """Checks the values; raises ``BundleError`` naming the first bad key."""
        check_labels(self.labels)
        # A hand-edited manifest must fail with its key named, not with a TypeError further down.
        for key, value, kinds in (
            ("model_file", self.model_file, str), ("backbone", self.backbone, str),
            ("quantization", self.quantization, str), ("created_at", self.created_at, str),
            ("source_run", self.source_run, str), ("versions", self.versions, dict),
            ("metrics", self.metrics, dict), ("edgetpu", self.edgetpu, (dict, type(None))),
            ("input.height", self.input.height, int), ("input.width", self.input.width, int),
            ("input.scale", self.input.scale, (int, float)), ("input.zero_point", self.input.zero_point, int),
            ("output.scale", self.output.scale, (int, float)), ("output.zero_point", self.output.zero_point, int),
        ):
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise BundleError(f"manifest.{key}: {value!r} has the wrong type")
        if not isinstance(self.label_map, dict) or not all(
                isinstance(key, str) and value in self.labels for key, value in self.label_map.items()):
            raise BundleError("manifest.label_map: must map folder names to the manifest's labels")
        if self.quantization not in QUANTIZATION_MODES:
            raise BundleError(f"manifest.quantization: {self.quantization!r} is not one of {QUANTIZATION_MODES}")
        if not isinstance(self.sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise BundleError("manifest.sha256: must be a 64-character hex digest")
        names = [("model_file", self.model_file)]
        if self.edgetpu and "model_file" in self.edgetpu:
            names.append(("edgetpu.model_file", self.edgetpu["model_file"]))
        for key, name in names:
            if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in (".", ".."):
                raise BundleError(f"manifest.{key}: must be a plain file name inside the bundle")
        spec = self.input
        if spec.height <= 0 or spec.width <= 0:
            raise BundleError("manifest.input: height and width must be positive")
        for key, value, allowed in (
            ("input.dtype", spec.dtype, TENSOR_DTYPES),
            ("input.color_order", spec.color_order, ("RGB",)),
            ("input.resize", spec.resize, ("stretch",)),
            ("input.interpolation", spec.interpolation, ("bilinear",)),
            ("output.dtype", self.output.dtype, TENSOR_DTYPES),
            ("output.meaning", self.output.meaning, ("probabilities",)),
        ):
            if value not in allowed:
                raise BundleError(f"manifest.{key}: {value!r} is not one of {allowed}")


def _spec(kind, data: Any, key: str):
    if not isinstance(data, dict):
        raise BundleError(f"manifest.{key}: must be an object")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(data.keys() - known)
    if unknown:
        raise BundleError(f"manifest.{key}: unknown keys {', '.join(unknown)}")
    try:
        return kind(**data)
    except TypeError as err:
        raise BundleError(f"manifest.{key}: {err}") from None


def normal_label(name: str) -> str:
    """The form labels, ``decision.bins`` keys, label-map keys and replay folders are compared in:
    Unicode NFC, so a folder named on a Mac (decomposed "ü") and a name typed by hand (composed "ü")
    are the same label."""
    return unicodedata.normalize("NFC", name)


def check_labels(labels: Any) -> None:
    """Raises ``BundleError`` unless ``labels`` is a non-empty sequence of unique, non-blank names."""
    if not isinstance(labels, (list, tuple)) or not labels:
        raise BundleError("labels: must be a non-empty list")
    for label in labels:
        # One label a line in labels.txt: a line break inside one would make two.
        if not isinstance(label, str) or not label.strip() or label != label.strip() or "\n" in label or "\r" in label:
            raise BundleError(f"labels: {label!r} is not a valid label")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise BundleError(f"labels: duplicate labels {', '.join(duplicates)}")


def read_labels(path: str | os.PathLike) -> tuple[str, ...]:
    """Reads ``labels.txt`` (one label a line, blank lines ignored) and validates it."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # Windows editors start a UTF-8 file with a BOM
    except OSError as err:
        raise BundleError(f"labels: cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        raise BundleError(f"labels: {path} is not UTF-8 text (byte {err.start})") from None
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    check_labels(labels)
    return labels


def sha256_file(path: str | os.PathLike) -> str:
    """Returns the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A validated bundle on disk."""

    path: Path
    manifest: Manifest

    @property
    def labels(self) -> tuple[str, ...]:
        return self.manifest.labels

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def name(self) -> str:
        return self.path.name

    def edgetpu_model_path(self) -> Path | None:
        """The compiled Edge TPU model beside the CPU model, when the converter made one.

        Raises:
            BundleError: the file does not match the ``edgetpu.sha256`` the converter recorded.
        """
        info = self.manifest.edgetpu or {}
        name = info.get("model_file")
        if not name or not (self.path / name).is_file():
            return None
        path = self.path / name
        expected = info.get("sha256")
        if expected is not None and sha256_file(path) != expected:
            raise BundleError(f"{path}: sha256 does not match the manifest (corrupt or replaced file)")
        return path

    def check_output_size(self, size: int) -> None:
        """Raises ``BundleError`` when the model's class count differs from the labels'."""
        if size != len(self.labels):
            raise BundleError(
                f"{self.path}: model outputs {size} classes but labels.txt names {len(self.labels)}"
            )


def load_bundle(path: str | os.PathLike, verify_hash: bool = True) -> Bundle:
    """Loads and validates a bundle folder.

    Args:
        path: the bundle folder.
        verify_hash: check the model file against the manifest's sha256.

    Returns:
        The validated ``Bundle``.

    Raises:
        BundleError: missing files, bad manifest, labels that disagree, wrong hash.
    """
    folder = Path(path)
    try:
        os.stat(folder)
    except PermissionError:  # a folder on the way the service user may not enter: not a crash, and not retried
        raise BundleError(f"{folder}: permission denied on the way to the model bundle (the service user must be "
                          f"able to read it and enter every folder above it)") from None
    except OSError:
        pass  # not there: said just below
    if not folder.is_dir():
        if folder.is_file():  # model.tflite given for its bundle folder
            raise BundleError(f"{folder}: is a file; a model bundle is the folder that holds it and its manifest")
        raise BundleError(f"{folder}: model bundle folder not found")
    manifest_path = folder / MANIFEST_FILE
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{folder}: no {MANIFEST_FILE} (is this a model bundle?)") from None
    except (OSError, ValueError) as err:
        raise BundleError(f"{manifest_path}: unreadable manifest: {err}") from None
    try:
        manifest = Manifest.from_dict(data)
    except BundleError as err:
        raise BundleError(f"{folder}: {err}") from None
    labels_path = folder / LABELS_FILE
    if labels_path.exists():
        try:
            file_labels = read_labels(labels_path)
        except BundleError as err:
            raise BundleError(f"{folder}: {err}") from None
        if file_labels != manifest.labels:
            raise BundleError(f"{folder}: {LABELS_FILE} does not match the manifest's labels "
                              f"({', '.join(file_labels)} against {', '.join(manifest.labels)})")
    else:
        raise BundleError(f"{folder}: no {LABELS_FILE}")
    model_path = folder / manifest.model_file
    if not model_path.is_file():
        raise BundleError(f"{folder}: model file {manifest.model_file} is missing")
    if verify_hash and sha256_file(model_path) != manifest.sha256:
        raise BundleError(f"{model_path}: sha256 does not match the manifest (corrupt or replaced file)")
    return Bundle(folder, manifest)


def write_bundle(folder: str | os.PathLike, model_bytes: bytes, manifest: Manifest,
                 extra_files: dict[str, bytes] | None = None) -> Bundle:
    """Writes a bundle atomically: into a temporary sibling folder, then renamed into place.

    The manifest's ``sha256`` is recomputed from ``model_bytes``, so callers cannot get it wrong.

    Returns:
        The bundle as ``load_bundle`` reads it back.
    """
    # A symlinked --out (models/current -> models/v3) is written where it points, and stays a link.
    target = Path(folder).resolve() if Path(folder).is_symlink() else Path(folder)
    manifest = dataclasses.replace(manifest, sha256=hashlib.sha256(model_bytes).hexdigest())
    manifest.validate()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes 0700; the daemon may run as another user (systemd User=smartbin)
        (staging / manifest.model_file).write_bytes(model_bytes)
        (staging / LABELS_FILE).write_text("\n".join(manifest.labels) + "\n", encoding="utf-8")
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
        # On disk before the swap, so a power cut after it cannot leave a bundle with half-written files.
        # (Between the swap's two renames, a moment, the old bundle is only at .<name>.old.)
        for path in [*staging.iterdir(), staging]:
            _fsync(path)
    except BaseException:  # a full disk or Ctrl-C must not leave a hidden half bundle behind
        _remove_tree(staging)
        raise
    if target.exists():
        backup = target.with_name(f".{target.name}.old")
        if backup.exists():
            _remove_tree(backup)
        target.rename(backup)
        try:
            staging.rename(target)
        except BaseException:
            backup.rename(target)  # the old bundle back in place, not left hidden as .name.old
            _remove_tree(staging)
            raise
        _remove_tree(backup)
    else:
        staging.rename(target)
    _fsync(target.parent)
    return load_bundle(target)


def _fsync(path: Path) -> None:
    if os.name == "nt" and path.is_dir():
        return  # Windows cannot open a folder to fsync it; NTFS journals the renames itself
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_tree(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
