"""Run folder → verified bundle: the steps of ``python -m converter RUN_DIR`` in order.

Every check that can fail on bad input (run folder, data folder, output folder) runs
before TensorFlow is even imported, and the accuracy gate runs before anything is
written into the bundle folder, so a refused conversion leaves no half-made bundle.

Usage:
    from converter.build import ConvertOptions, convert_run
    bundle = convert_run(ConvertOptions(run_dir="runs/efflite0", out="models/efflite0-int8"))
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from converter import ConverterError
from converter.runfolder import RunFolder, load_run
from edge.bundle import LABELS_FILE, MANIFEST_FILE, Bundle, InputSpec, Manifest, load_bundle, write_bundle
from edge.errors import BundleError

MODEL_FILE = "model.tflite"


@dataclass
class ConvertOptions:
    """What ``python -m converter RUN_DIR`` was asked to do (see ``converter.cli`` for each flag)."""

    run_dir: str
    out: str | None = None
    quantize: str = "int8"
    calibration_samples: int = 300
    max_drop: float = 1.0
    significance: float = 0.05
    edgetpu: bool = False
    data: str | None = None
    name: str | None = None
    keep_float: bool = False
    threads: int = 2
    seed: int = 0


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def bundle_folder(options: ConvertOptions, run: RunFolder) -> Path:
    """``--out``, else ``models/<--name>``, else ``models/<run folder name>-<mode>``."""
    if options.out:
        return Path(options.out)
    name = options.name or f"{run.path.resolve().name}-{options.quantize}"
    return Path("models") / name


def check_output_folder(folder: Path) -> None:
    """Fails early (before minutes of work) when the bundle cannot be written there.

    Refuses to replace an existing folder that is not a bundle, or a bundle that holds other files
    too: ``write_bundle`` swaps the whole folder, which must never eat someone's files. Creates no
    folder: a conversion that then fails leaves nothing behind.
    """
    if folder.exists() and not folder.is_dir():
        raise ConverterError(f"--out {folder}: exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        try:  # a manifest.json alone (a web app's, say) does not make a bundle
            existing = load_bundle(folder, verify_hash=False)
        except BundleError as err:
            reason = str(err).removeprefix(f"{folder}: ")
            raise ConverterError(f"--out {folder}: folder exists and is not a model bundle ({reason}); "
                                 "refusing to replace it") from None
        own = {MANIFEST_FILE, LABELS_FILE, existing.manifest.model_file,
               *((existing.manifest.edgetpu or {}).get("model_file", ""),)}
        others = sorted(path.name for path in folder.iterdir()
                        if path.name not in own and not _desktop_junk(path.name))
        if others:
            raise ConverterError(f"--out {folder}: the bundle there also holds {', '.join(others[:5])}"
                                 f"{' ...' if len(others) > 5 else ''}, which replacing it would delete; "
                                 "move them or choose another --out")
    # write_bundle writes a symlinked --out where the link points: check there.
    target = folder.resolve() if folder.is_symlink() else folder
    parent = next((p for p in target.parents if p.exists()), Path("."))
    if not parent.is_dir():
        raise ConverterError(f"--out {folder}: cannot write there ({parent} is not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".smartbin-write-test-"):
            pass
    except OSError as err:
        raise ConverterError(f"--out {folder}: cannot write there ({err.strerror or err})") from None


def _desktop_junk(name: str) -> bool:
    # What file managers drop into any folder they show; deleting it with the old bundle loses nothing.
    return name in (".DS_Store", "Thumbs.db", "desktop.ini") or name.startswith("._")


def convert_run(options: ConvertOptions, say: Callable[[str], None] = _stderr) -> Bundle:
    """Converts, verifies and writes the bundle.

    Raises:
        ConverterError: bad input (exit 2 in the CLI).
        GateError: the converted model lost more accuracy than allowed (exit 1); nothing written.
    """
    from converter.quantize import QUANTIZATION_MODES

    if options.quantize not in QUANTIZATION_MODES:
        raise ConverterError(f"--quantize {options.quantize!r}: choose one of {', '.join(QUANTIZATION_MODES)}")
    if options.edgetpu and options.quantize != "int8":
        raise ConverterError("--edgetpu needs --quantize int8 (the Edge TPU runs only full-integer models)")
    if options.calibration_samples < 1:
        raise ConverterError("--calibration-samples must be at least 1")
    run = load_run(options.run_dir)
    out = bundle_folder(options, run)
    check_output_folder(out)
    data_dir = run.resolve_data_dir(options.data)
    gate_split = "val" if run.splits.get("val") else "test"
    run.check_data(data_dir, ("train", "val", "test") if options.quantize == "int8" else ("val", "test"))

    # TensorFlow is imported only now that the inputs are known to be good.
    from converter import keras_model, quantize
    from converter.dataset import load_images, stratified_sample
    from converter.litert import LiteModel
    from converter.verify import check_gate, gate_line, summary

    say(f"loading {run.model_path}")
    model = keras_model.load_keras_model(run.model_path, run.labels)
    size = keras_model.input_size(model)
    if run.image_size and run.image_size != size:
        say(f"warning: config.yaml says image_size {run.image_size} but the model takes {size}; using {size}")
    pixels = InputSpec(height=size, width=size)

    calibration = None
    if options.quantize == "int8":
        sample = stratified_sample(run.items("train", data_dir), options.calibration_samples, options.seed)
        calibration, _, skipped = load_images(sample, pixels, desc="calibration")
        _report_skipped(say, skipped)
        say(f"calibrating on {len(calibration)} train photos")
    say(f"converting to {options.quantize}")
    model_bytes = quantize.convert(model, options.quantize, calibration)
    lite = LiteModel(model_bytes, threads=options.threads)
    input_spec, output_spec = lite.specs()
    if options.quantize == "int8" and (input_spec.dtype, input_spec.scale, input_spec.zero_point) != ("uint8", 1.0, 0):
        raise ConverterError(
            f"int8 input came out as {input_spec.dtype} scale {input_spec.scale:g} zero point "
            f"{input_spec.zero_point}, not raw RGB (uint8, 1, 0); the model must take 0..255 pixels"
        )

    float_bytes = model_bytes if options.quantize == "float32" else quantize.convert(model, "float32")
    _write_float_reference(run, float_bytes, say)

    # The gate decides on val, like every other choice: test figures are measured only for a model
    # that passed, and only reported.
    if gate_split != "val":
        say("warning: the run has no val split; the gate falls back to the test split")
    elif run.config.get("final_fit"):
        say("warning: the run trained on its val photos (a final fit): the gate compares the two models on "
            "photos they have seen, where a conversion flips fewer answers than on new ones, so it checks the "
            "conversion more leniently and says nothing about how either model generalises")
    gate = _compare_on(gate_split, run, model, lite, data_dir, pixels, say)
    say(f"gate: {gate_line(gate)}")
    check_gate(gate, options.max_drop, options.significance)
    metrics = _evaluate(run, model, lite, data_dir, pixels, say)
    metrics["gate"] = {key: gate[key] for key in ("split", "n", "agreement", "drop_points", "flips")} | {
        "float_accuracy": gate["float"]["accuracy"], "model_accuracy": gate["model"]["accuracy"],
        "max_drop": options.max_drop, "significance": options.significance,
        "seen_in_training": gate_split == "val" and bool(run.config.get("final_fit"))}
    say(summary(metrics))

    extra_files, edgetpu_info = {}, None
    if options.edgetpu:
        extra_files, edgetpu_info = _edgetpu(model_bytes, say)

    manifest = Manifest(
        labels=run.labels, model_file=MODEL_FILE, sha256="0" * 64, input=input_spec, output=output_spec,
        backbone=run.backbone, quantization=options.quantize,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source_run=Path(options.run_dir).as_posix(), versions=keras_model.versions(), metrics=metrics,
        edgetpu=edgetpu_info, label_map=run.folder_labels(),
    )
    check_output_folder(out)  # again: minutes have passed, and someone may have put a file there since
    bundle = write_bundle(out, model_bytes, manifest, extra_files)
    _make_readable(out)
    beside = out.parent / f"{out.name}-float32.tflite"
    if options.keep_float:
        beside.write_bytes(float_bytes)
        say(f"wrote float32 reference {beside}")
    elif beside.is_file():
        try:
            beside.unlink()  # an earlier conversion's: bench must never compare this bundle against it
            say(f"removed {beside} (left by an earlier conversion into {out})")
        except OSError as err:  # the bundle is written; say what is left, do not fail the conversion
            say(f"warning: could not remove the stale {beside} ({err.strerror}); delete it before `bench`")
    size_mb = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    say(f"wrote {out} ({size_mb:.2f} MB)")
    return bundle


def _both_models_on(split: str, run: RunFolder, model, lite, data_dir: Path, pixels: InputSpec,
                    say: Callable[[str], None]):
    """One split's photos through the bin's preprocessing, classified by the float and the converted model.

    Returns ``(items, images, targets, skipped, float_probabilities, model_probabilities, metrics)``.
    """
    from converter import keras_model
    from converter.dataset import load_images
    from converter.verify import compare

    items = run.items(split, data_dir)
    images, targets, skipped = load_images(items, pixels, desc=f"{split} photos")
    _report_skipped(say, skipped)
    if not len(images):
        raise ConverterError(f"{data_dir}: none of the {split} split's photos could be read")
    float_probabilities = keras_model.predict(model, images)
    if not np.isfinite(float_probabilities).all():
        # Every comparison would pass: argmax of NaN is class 0 for both models.
        raise ConverterError(f"{run.path}: the trained model answers NaN or infinite probabilities (its training "
                             f"diverged): retrain it with a lower learning rate")
    model_probabilities = lite.predict(images)
    metrics = compare(targets, float_probabilities, model_probabilities, run.labels, split=split)
    return items, images, targets, skipped, float_probabilities, model_probabilities, metrics


def _compare_on(split: str, run: RunFolder, model, lite, data_dir: Path, pixels: InputSpec,
                say: Callable[[str], None]) -> dict:
    """Float Keras model against the converted model on one split (the gate's figures on val)."""
    return _both_models_on(split, run, model, lite, data_dir, pixels, say)[-1]


def items_read(items: list, skipped: list[str]) -> list:
    """The items whose photos were read: ``load_images``' skipped messages each start ``"<path>: "``."""
    return [item for item in items if not any(message.startswith(f"{item.path}: ") for message in skipped)]


def _evaluate(run: RunFolder, model, lite, data_dir: Path, pixels: InputSpec,
              say: Callable[[str], None]) -> dict:
    """The manifest's figures: float Keras model and converted model on the test split."""
    from converter.preprocessing import measure as measure_preprocessing

    test_items, test_images, targets, skipped, float_probabilities, model_probabilities, metrics = _both_models_on(
        "test", run, model, lite, data_dir, pixels, say)
    if skipped:
        metrics["skipped"] = len(skipped)
    # The figures above use the bin's pipeline; say how far training's is (a guard: 0 since session 13).
    # The photos the bin's decoder read (its images line up with these), so one unreadable photo does
    # not cost the whole comparison.
    pipelines = measure_preprocessing(model, items_read(test_items, skipped), test_images, float_probabilities,
                                      targets)
    if pipelines:
        metrics["preprocessing"] = pipelines
    if run.metrics.get("accuracy") is not None:
        metrics["training_pipeline"] = {key: run.metrics[key] for key in ("accuracy", "macro_f1") if key in run.metrics}
    metrics["views"] = _as_the_bin_classifies(run, model, lite, test_images, targets,
                                              (float_probabilities, model_probabilities))
    return metrics


def _as_the_bin_classifies(run: RunFolder, model, lite, images, targets, original: tuple) -> dict:
    """Both models' test figures with each photo shown as every view of the bin's default ``model.views``
    (``edge.imaging.DEFAULT_VIEWS``), the probabilities averaged: what the bin's own accuracy will be.
    ``original`` holds both models' probabilities for the photos as they are, already computed."""
    from converter import keras_model
    from converter.verify import compare
    from edge import imaging

    assert "original" in imaging.DEFAULT_VIEWS
    float_total, model_total = original
    for name in imaging.DEFAULT_VIEWS:
        if name == "original":
            continue
        shown = np.stack([imaging.view(image, name) for image in images])
        float_total = float_total + keras_model.predict(model, shown)
        model_total = model_total + lite.predict(shown, desc=f"converted model, {name}")
    count = len(imaging.DEFAULT_VIEWS)
    figures = compare(targets, float_total / count, model_total / count, run.labels)
    return {"views": list(imaging.DEFAULT_VIEWS)} | {key: figures[key] for key in ("float", "model", "agreement")}


def _make_readable(folder: Path) -> None:
    # write_bundle stages in a mkdtemp folder (mode 0700); the daemon often runs as another user.
    folder.chmod(0o755)


def _report_skipped(say: Callable[[str], None], skipped: list[str]) -> None:
    for message in skipped:
        say(f"warning: skipped unreadable photo {message}")


def _write_float_reference(run: RunFolder, float_bytes: bytes, say: Callable[[str], None]) -> None:
    # bench compares against this file; a read-only run folder only costs that comparison.
    try:
        run.float_reference_path.write_bytes(float_bytes)
    except OSError as err:
        say(f"warning: cannot write {run.float_reference_path} ({err.strerror}); bench will lack the float32 reference")


def _edgetpu(model_bytes: bytes, say: Callable[[str], None]) -> tuple[dict[str, bytes], dict | None]:
    from converter import edgetpu
    from converter.litert import list_ops

    problems = edgetpu.precheck(list_ops(model_bytes))
    if problems:
        say("Edge TPU pre-check: these ops will run on the CPU (and everything after the first of them):")
        for problem in problems:
            say(f"  {problem}")
    else:
        say("Edge TPU pre-check: every op is an 8-bit Edge TPU operation")
    if not edgetpu.find_compiler():
        say(edgetpu.HOW_TO_GET_COMPILER)
        return {}, None
    say("compiling for the Edge TPU")
    try:
        compiled, info = edgetpu.compile_model(model_bytes)
    except ConverterError as err:
        # The CPU model has passed the gate already; a compiler that refuses it (too new an op version,
        # a crash) costs only the Edge TPU file, as when the compiler is missing.
        say(f"warning: {err}; the bundle is written without an Edge TPU model")
        return {}, None
    say(f"Edge TPU: {info['ops_on_tpu']} ops on the TPU, {info['ops_on_cpu']} on the CPU "
        f"(compiler {info['compiler_version']})")
    # Recorded so the bin can check the compiled file as it checks model.tflite.
    sha256 = hashlib.sha256(compiled).hexdigest()
    return {edgetpu.MODEL_FILE: compiled}, {"model_file": edgetpu.MODEL_FILE, "sha256": sha256, **info}

