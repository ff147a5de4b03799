"""``python -m converter`` end to end: a tiny real run folder converted in every mode and run with LiteRT.

One tiny run (32 px CNN trained a few steps on generated photos) is shared by the module,
and each conversion is made once and reused, to keep TensorFlow time down.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from converter.cli import main
from edge.bundle import load_bundle
from tests.conftest import TINY_LABELS
from tests.converter_run_factory import write_run_folder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MODES = ("int8", "float16", "dynamic", "float32")
EXPECTED_IO = {  # mode -> (input dtype, output dtype)
    "int8": (np.uint8, np.uint8),
    "float16": (np.float32, np.float32),
    "dynamic": (np.float32, np.float32),
    "float32": (np.float32, np.float32),
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A folder holding ``photos/`` and ``run/`` (a real trained tiny run)."""
    pytest.importorskip("tensorflow")
    from tests.converter_run_factory import train_tiny_model

    root = tmp_path_factory.mktemp("converter")
    write_run_folder(root, model=train_tiny_model())
    return root


def convert(workspace: Path, *args: str) -> int:
    """Runs the converter from inside the workspace, with the run folder given relatively."""
    with contextlib.chdir(workspace):
        return main(["run", *args])


@pytest.fixture(scope="module")
def bundles(workspace) -> dict[str, Path]:
    """Every mode converted once (with the default gate), keyed by mode."""
    made = {}
    for mode in MODES:
        assert convert(workspace, "--quantize", mode, "--out", f"bundles/tiny-{mode}") == 0
        made[mode] = workspace / "bundles" / f"tiny-{mode}"
    return made


def test_int8_manifest_says_raw_rgb_in_and_uint8_probabilities_out(bundles):
    manifest = load_bundle(bundles["int8"]).manifest
    assert manifest.labels == TINY_LABELS
    assert manifest.quantization == "int8" and manifest.model_file == "model.tflite"
    assert (manifest.input.height, manifest.input.width, manifest.input.dtype) == (32, 32, "uint8")
    assert (manifest.input.scale, manifest.input.zero_point) == (1.0, 0)
    assert (manifest.input.resize, manifest.input.interpolation, manifest.input.color_order) == \
        ("stretch", "bilinear", "RGB")
    assert (manifest.output.dtype, manifest.output.scale, manifest.output.zero_point) == ("uint8", 1 / 256, 0)
    assert manifest.backbone == "tiny_cnn"
    assert manifest.source_run == "run"  # as given: relative, no machine path
    assert {"tensorflow", "keras", "ai-edge-litert"} <= set(manifest.versions)
    assert manifest.edgetpu is None


def test_manifest_carries_the_gate_figures(bundles):
    metrics = load_bundle(bundles["int8"]).manifest.metrics
    assert metrics["split"] == "test" and metrics["n"] == 6
    for model in ("float", "model"):
        assert set(metrics[model]) == {"accuracy", "macro_f1", "per_class_f1"}
        assert list(metrics[model]["per_class_f1"]) == list(TINY_LABELS)
    assert 0.0 <= metrics["agreement"] <= 1.0
    assert metrics["drop_points"] == pytest.approx(
        100 * (metrics["float"]["accuracy"] - metrics["model"]["accuracy"]))
    assert metrics["drop_points"] <= 1.0
    assert metrics["training_pipeline"]["accuracy"] == 1.0
    views = metrics["views"]  # what the bin will score: each test photo as is, mirrored and upside down
    assert views["views"] == ["original", "mirrored", "flipped"]
    assert set(views["model"]) == {"accuracy", "macro_f1", "per_class_f1"} and 0 <= views["agreement"] <= 1
    gate = metrics["gate"]  # the decision was made on val; test is only reported
    assert gate["split"] == "val" and gate["n"] == 3 and gate["max_drop"] == 1.0 and gate["significance"] == 0.05
    assert gate["drop_points"] == pytest.approx(100 * (gate["float_accuracy"] - gate["model_accuracy"]))
    assert set(gate["flips"]) == {"broken", "fixed", "mcnemar_p"}
    pipelines = metrics["preprocessing"]  # training's pictures against the bin's (the same functions since session 13)
    assert 0 <= pipelines["pixel_mean_abs_diff"] < 5
    assert 0.0 <= pipelines["float_top1_agreement"] <= 1.0


def test_manifest_round_trips(bundles):
    from edge.bundle import Manifest

    data = json.loads((bundles["int8"] / "manifest.json").read_text())
    assert Manifest.from_dict(data).to_dict() == data


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_runs_in_litert_and_names_each_photo_in_label_order(bundles, workspace, mode):
    from ai_edge_litert.interpreter import Interpreter

    from edge import imaging

    bundle = load_bundle(bundles[mode])
    assert bundle.manifest.quantization == mode
    interpreter = Interpreter(model_path=str(bundle.model_path))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert list(source["shape"]) == [1, 32, 32, 3]
    assert (source["dtype"], target["dtype"]) == EXPECTED_IO[mode]
    assert list(target["shape"]) == [1, len(TINY_LABELS)]
    scale, zero_point = target["quantization"]
    for index, label in enumerate(TINY_LABELS):
        rgb = imaging.read_image(workspace / "photos" / label / f"{label}_7.jpg")  # a test photo
        tensor = imaging.resize_for_model(rgb, bundle.manifest.input)[None].astype(source["dtype"])
        interpreter.set_tensor(source["index"], tensor)
        interpreter.invoke()
        raw = interpreter.get_tensor(target["index"])[0].astype(np.float32)
        probabilities = scale * (raw - zero_point) if scale else raw
        assert probabilities.sum() == pytest.approx(1.0, abs=0.02)
        assert TINY_LABELS[int(np.argmax(probabilities))] == label


@pytest.mark.parametrize("mode", ("int8", "float32"))
def test_edge_classifier_accepts_the_bundle(bundles, workspace, mode):
    from edge import imaging
    from edge.classifier import Classifier

    classifier = Classifier.from_path(bundles[mode], threads=1)
    prediction = classifier.classify(imaging.read_image(workspace / "photos" / "metal" / "metal_6.jpg"))
    assert prediction.label == "metal"


def test_int8_bundle_is_small(bundles):
    assert sum(f.stat().st_size for f in bundles["int8"].iterdir()) < 5_000_000


def test_bundle_folder_is_readable_by_other_users(bundles):
    assert bundles["int8"].stat().st_mode & stat.S_IROTH


def test_float32_reference_is_kept_in_the_run_folder(bundles, workspace):
    from ai_edge_litert.interpreter import Interpreter

    reference = workspace / "run" / "model_float32.tflite"
    interpreter = Interpreter(model_path=str(reference))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32


def test_a_refusing_gate_writes_nothing(workspace, capsys, monkeypatch):
    import converter.dataset
    import converter.verify

    loaded = []
    real_load = converter.dataset.load_images

    def spy(items, spec, desc="images", progress=True):
        loaded.append((desc, [item.name for item in items]))
        return real_load(items, spec, desc, progress)

    real_gate = converter.verify.check_gate

    def refuse_everything(metrics, max_drop, significance=0.05):
        # The tiny model loses nothing, so the real gate judges it as if the float model had scored more.
        inflated = {**metrics["float"], "accuracy": metrics["float"]["accuracy"] + 0.5}
        real_gate({**metrics, "float": inflated, "drop_points": metrics["drop_points"] + 50}, max_drop, significance)

    monkeypatch.setattr(converter.dataset, "load_images", spy)
    monkeypatch.setattr(converter.verify, "check_gate", refuse_everything)
    assert convert(workspace, "--out", "bundles/refused", "--keep-float") == 1
    err = capsys.readouterr().err
    assert "refused: accuracy gate failed" in err and "no bundle written" in err
    assert not (workspace / "bundles" / "refused").exists()
    assert not (workspace / "bundles" / "refused-float32.tflite").exists()
    bundles = workspace / "bundles"  # other tests of this module may have made it
    assert not bundles.exists() or not [p for p in bundles.iterdir() if p.name.startswith(".")]  # no staging left
    # Calibration drew on the train split only, never on test photos.
    split = json.loads((workspace / "run" / "split.json").read_text())["splits"]
    calibration = dict(loaded)["calibration"]
    assert calibration and set(calibration) <= set(split["train"])
    # The gate refused on val: the test photos were never even loaded.
    assert set(dict(loaded)["val photos"]) == set(split["val"])
    assert "test photos" not in dict(loaded)
    assert "on 3 val photos" in err


def test_narrow_calibration_range_still_gives_raw_rgb_input(workspace):
    import keras

    from converter.litert import LiteModel
    from converter.quantize import convert as quantize
    from tests.model_factory import colour_samples

    model = keras.saving.load_model(workspace / "run" / "model.keras")
    images, _ = colour_samples(3, 32, per_class=4)
    narrow = np.clip(images, 40, 200).astype(np.uint8)  # no black, no white pixel anywhere
    input_spec, _ = LiteModel(quantize(model, "int8", narrow)).specs()
    assert (input_spec.dtype, input_spec.scale, input_spec.zero_point) == ("uint8", 1.0, 0)


def test_edgetpu_without_compiler_explains_and_writes_the_cpu_bundle(workspace, capsys, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no edgetpu_compiler here
    assert convert(workspace, "--out", "bundles/tpu-less", "--edgetpu", "--keep-float") == 0
    err = capsys.readouterr().err
    assert "every op is an 8-bit Edge TPU operation" in err
    assert "apt-get install edgetpu-compiler" in err and "Docker" in err
    bundle = load_bundle(workspace / "bundles" / "tpu-less")
    assert bundle.manifest.edgetpu is None and bundle.edgetpu_model_path() is None
    assert (workspace / "bundles" / "tpu-less-float32.tflite").is_file()


def test_a_later_conversion_without_keep_float_removes_the_stale_reference(workspace, capsys):
    assert convert(workspace, "--out", "bundles/again", "--keep-float") == 0
    assert (workspace / "bundles" / "again-float32.tflite").is_file()
    assert convert(workspace, "--out", "bundles/again") == 0
    assert not (workspace / "bundles" / "again-float32.tflite").exists()  # bench would compare with it
    assert "removed" in capsys.readouterr().err


def test_bench_finds_the_runs_float_reference_from_any_folder(bundles, workspace, tmp_path, monkeypatch):
    from converter.bench import find_float_reference

    bundle = load_bundle(bundles["int8"])  # source_run "run", relative
    monkeypatch.chdir(tmp_path)
    found = find_float_reference(bundle)  # bundles/tiny-int8 -> ../../run, the folder holding both
    assert found is not None and found.resolve() == (workspace / "run" / "model_float32.tflite").resolve()


FAKE_COMPILER = """#!/bin/sh
# Stands in for Coral's x86-only compiler: copies the model and prints a fully-mapped log.
out="$3"; model="$4"
cp "$model" "$out/model_edgetpu.tflite"
echo "Edge TPU Compiler version 16.0.384591198"
echo "Model compiled successfully in 5 ms."
echo "Number of Edge TPU subgraphs: 1"
echo "Total number of operations: 6"
echo "Compilation succeeded!"
"""


def test_edgetpu_with_compiler_records_the_compiled_model(workspace, monkeypatch, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "edgetpu_compiler").write_text(FAKE_COMPILER)
    (tools / "edgetpu_compiler").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    assert convert(workspace, "--out", "bundles/tpu", "--edgetpu") == 0
    bundle = load_bundle(workspace / "bundles" / "tpu")
    info = bundle.manifest.edgetpu
    assert info["model_file"] == "model_edgetpu.tflite"
    assert (info["ops_on_tpu"], info["ops_on_cpu"], info["compiler_version"]) == (6, 0, "16.0.384591198")
    assert bundle.edgetpu_model_path() == bundle.path / "model_edgetpu.tflite"


def test_bench_prints_latency_table_against_the_float32_model(bundles, workspace, capsys):
    with contextlib.chdir(workspace):
        assert main(["bench", "bundles/tiny-int8", "--threads", "1,2", "--runs", "5", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "float32 reference: run/model_float32.tflite" in out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("threads"))
    header = lines[at]
    assert header.split() == ["threads", "int8", "median", "ms", "p90", "ms", "float32", "median", "ms",
                              "p90", "ms", "ratio"]
    rows = [line.split() for line in lines[at + 1:]]
    assert [row[0] for row in rows] == ["1", "2"] and all(len(row) == 6 for row in rows)


def test_bench_json(bundles, workspace, capsys):
    with contextlib.chdir(workspace):
        assert main(["bench", "bundles/tiny-int8", "--threads", "1", "--runs", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    row = result["results"][0]
    assert row["threads"] == 1 and row["model"]["median_ms"] > 0 and row["float32"]["p90_ms"] > 0
    assert row["ratio"] == pytest.approx(row["model"]["median_ms"] / row["float32"]["median_ms"], rel=0.01)


def test_bench_without_a_reference_times_the_model_alone(bundles, capsys):
    assert main(["bench", str(bundles["int8"] / "model.tflite"), "--threads", "1", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "not found (ratio not measured)" in out and "ratio" not in out.splitlines()[-2]


def test_bench_refuses_a_bundle_whose_model_was_replaced(bundles, tmp_path, capsys):
    import shutil

    copy = tmp_path / "tampered"
    shutil.copytree(bundles["int8"], copy)
    (copy / "model.tflite").write_bytes(b"garbage")
    assert main(["bench", str(copy)]) == 2
    assert "sha256 does not match" in capsys.readouterr().err


def test_a_compiler_that_refuses_the_model_still_leaves_the_verified_cpu_bundle(workspace, monkeypatch, tmp_path, capsys):
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "edgetpu_compiler").write_text(
        "#!/bin/sh\necho \"ERROR: Didn't find op for builtin opcode 'FULLY_CONNECTED' version '12'\" >&2\nexit 1\n")
    (tools / "edgetpu_compiler").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    assert convert(workspace, "--out", "bundles/tpu-refused", "--edgetpu") == 0
    bundle = load_bundle(workspace / "bundles" / "tpu-refused")
    assert bundle.manifest.edgetpu is None and bundle.edgetpu_model_path() is None
    assert "Didn't find op for builtin opcode" in capsys.readouterr().err


def test_int8_model_hands_every_pixel_value_to_the_first_convolution(workspace):
    """Before a 'same'-padded first convolution (EfficientNet-Lite's stem) Keras' ``x / 128 - 127 / 128``
    would squeeze the 256 pixel values onto ~170 int8 levels; traced as ``(x - 127) / 128`` none are lost."""
    import keras

    from converter.litert import _interpreter_class
    from converter.quantize import convert as quantize
    from tests.model_factory import colour_samples

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), name="image")
    x = keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    images, _ = colour_samples(3, 32, per_class=4)
    interpreter = _interpreter_class()(model_content=quantize(model, "int8", images.astype(np.uint8)),
                                       experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    every_value = np.resize(np.arange(256, dtype=np.uint8), (1, 32, 32, 3))
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], every_value)
    interpreter.invoke()
    conv = next(op for op in interpreter._get_ops_details() if op["op_name"] == "CONV_2D")
    seen = interpreter.get_tensor_details()[conv["inputs"][0]]["quantization_parameters"]
    levels = interpreter.get_tensor(conv["inputs"][0]).astype(np.float32)
    received = seen["scales"][0] * (levels - seen["zero_points"][0])
    pixel_order = np.argsort(every_value.reshape(-1), kind="stable")
    # Each pixel value its own level, in pixel order, evenly spaced: an exact affine image of the pixels.
    assert len(np.unique(levels)) == 256
    steps = np.diff(np.unique(received.reshape(-1)[pixel_order]))
    np.testing.assert_allclose(steps, steps[0], rtol=1e-6)


def test_exact_rescaling_leaves_the_float_model_as_it_was(workspace):
    import keras

    from converter.quantize import exact_input_rescaling

    model = keras.saving.load_model(workspace / "run" / "model.keras")
    rescaling = next(layer for layer in model.layers if isinstance(layer, keras.layers.Rescaling))
    images = np.resize(np.arange(256, dtype=np.float32), (2, 32, 32, 3))
    before = np.asarray(rescaling(images))
    with exact_input_rescaling(model) as patched:
        during = np.asarray(rescaling(images))
    assert patched == 1
    np.testing.assert_allclose(during, before, atol=1e-6)
    assert "call" not in vars(rescaling)


def test_exact_rescaling_undoes_itself_after_an_error_and_patches_a_shared_layer_once():
    import keras

    from converter.quantize import exact_input_rescaling

    inputs = keras.Input((8, 8, 3))
    rescaling = keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0)
    inner = keras.Model(inputs, rescaling(inputs))
    outer_inputs = keras.Input((8, 8, 3))
    outer = keras.Model(outer_inputs, inner(rescaling(outer_inputs)))  # reached twice: outer and inner
    with pytest.raises(RuntimeError, match="converter failed"):
        with exact_input_rescaling(outer) as patched:
            assert patched == 1
            raise RuntimeError("converter failed")
    assert "call" not in vars(rescaling)


@pytest.mark.parametrize("scale, offset", [(1 / 127.5, -1.0), (1 / 128.0, 1.0), ([1 / 128.0] * 3, -127 / 128.0)])
def test_exact_rescaling_leaves_rescalings_it_cannot_make_exact(scale, offset):
    """MobileNetV3's x / 127.5 - 1 shifts by half a pixel; a positive shift or per-channel scales stay too."""
    import keras

    from converter.quantize import exact_input_rescaling

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Rescaling(scale, offset=offset)(inputs))
    with exact_input_rescaling(model) as patched:
        assert patched == 0


def test_a_final_fits_gate_still_runs_on_val_and_says_it_checks_only_the_conversion(workspace, capsys):
    import shutil

    import yaml

    final = workspace / "final-run"
    shutil.copytree(workspace / "run", final)
    config = yaml.safe_load((final / "config.yaml").read_text()) or {}
    (final / "config.yaml").write_text(yaml.safe_dump({**config, "final_fit": True}))
    with contextlib.chdir(workspace):
        assert main(["final-run", "--quantize", "float32", "--out", "bundles/final"]) == 0
    err = capsys.readouterr().err
    assert "trained on its val photos (a final fit)" in err and "gate: val split, 3 photos" in err
    assert load_bundle(workspace / "bundles" / "final").manifest.metrics["gate"]["seen_in_training"] is True


def test_a_held_out_gate_says_its_photos_were_unseen(bundles):
    assert load_bundle(bundles["int8"]).manifest.metrics["gate"]["seen_in_training"] is False


def test_an_unreadable_calibration_photo_is_named_and_left_out(workspace, tmp_path, capsys):
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(workspace / "photos", copy / "photos")
    shutil.copytree(workspace / "run", copy / "run")
    train_photo = json.loads((copy / "run" / "split.json").read_text())["splits"]["train"][0]
    (copy / "photos" / train_photo).write_bytes(b"")  # emptied by a failed copy after training
    assert convert(copy, "--out", "bundles/one-short") == 0
    err = capsys.readouterr().err
    assert f"warning: skipped unreadable photo photos/{train_photo}: not a readable image" in err
    trained = len(json.loads((copy / "run" / "split.json").read_text())["splits"]["train"])
    assert f"calibrating on {trained - 1} train photos" in err
