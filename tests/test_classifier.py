"""classifier: a real INT8 LiteRT bundle, preprocessing per the manifest, clear errors for bad bundles."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.classifier import Classifier, Prediction
from edge.errors import BundleError, ClassifierError
from tests.conftest import TINY_LABELS, make_photo


def copy_bundle(tiny_bundle, tmp_path):
    return shutil.copytree(tiny_bundle, tmp_path / "copy")


def test_classifies_each_generated_colour_as_its_class(classifier):
    for index, label in enumerate(TINY_LABELS):
        prediction = classifier.classify(make_photo(index, size=(48, 64), seed=999 + index))
        assert isinstance(prediction, Prediction)
        assert prediction.label == label
        assert prediction.confidence == prediction.probabilities[label]


def test_probabilities_are_in_bundle_order_and_sum_to_one(classifier):
    probabilities = classifier.probabilities(make_photo(1))
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(TINY_LABELS),)
    assert abs(float(probabilities.sum()) - 1.0) < 0.02
    prediction = classifier.classify(make_photo(1))
    assert list(prediction.probabilities) == list(TINY_LABELS)
    assert [label for label, _ in prediction.top3] == sorted(
        TINY_LABELS, key=lambda label: -prediction.probabilities[label])
    assert prediction.latency_ms >= prediction.invoke_ms > 0


def test_classify_frames_averages_the_probabilities_of_every_frame(classifier):
    frames = [make_photo(0, seed=1), make_photo(2, seed=2), make_photo(2, seed=3)]
    expected = np.mean([classifier.probabilities(frame) for frame in frames], axis=0)
    prediction = classifier.classify_frames(frames)
    assert prediction.label == "metal"
    np.testing.assert_allclose(list(prediction.probabilities.values()), expected, rtol=1e-6)
    with pytest.raises(ValueError):
        classifier.classify_frames([])


def test_frame_i_is_shown_as_view_i_mod_n_and_classify_shows_every_view(tiny_bundle, monkeypatch):
    views = Classifier.from_path(tiny_bundle, threads=1, views=["original", "mirrored", "flipped"])
    shown = []
    real_run = Classifier._run
    monkeypatch.setattr(Classifier, "_run", lambda self, rgb, view="original", background=False:
                        shown.append((id(rgb), view)) or real_run(self, rgb, view, background))
    frames = [make_photo(0, seed=1), make_photo(2, seed=2), make_photo(2, seed=3), make_photo(1, seed=4)]
    views.classify_frames(frames)
    assert shown == [(id(frames[0]), "original"), (id(frames[1]), "mirrored"), (id(frames[2]), "flipped"),
                     (id(frames[3]), "original")]
    shown.clear()
    views.classify(make_photo(1, seed=5))
    assert [view for _, view in shown] == ["original", "mirrored", "flipped"]


def test_the_mean_is_over_the_views_probabilities(tiny_bundle, classifier):
    views = Classifier.from_path(tiny_bundle, threads=1, views=["original", "turned"])
    frames = [make_photo(0, seed=1), make_photo(2, seed=2)]
    expected = np.mean([classifier.probabilities(frames[0], "original"),
                        classifier.probabilities(frames[1], "turned")], axis=0)
    np.testing.assert_allclose(list(views.classify_frames(frames).probabilities.values()), expected, rtol=1e-6)


def shown_to_model(classifier, rgb, view):
    classifier._write_input(rgb, view)
    return classifier._interpreter.get_tensor(classifier._input["index"])[0]


@pytest.mark.parametrize("view, flip", [("mirrored", lambda a: a[:, ::-1]), ("flipped", lambda a: a[::-1]),
                                        ("turned", lambda a: a[::-1, ::-1])])
def test_each_view_reaches_the_model_as_those_pixels(classifier, view, flip):
    photo = np.random.default_rng(7).integers(0, 256, (48, 64, 3), dtype=np.uint8)  # no symmetry to hide a bug
    np.testing.assert_array_equal(shown_to_model(classifier, photo, view),
                                  shown_to_model(classifier, np.ascontiguousarray(flip(photo)), "original"))
    assert not np.array_equal(shown_to_model(classifier, photo, view), shown_to_model(classifier, photo, "original"))


@pytest.mark.parametrize("view", ["original", "mirrored", "flipped", "turned"])
@pytest.mark.parametrize("size", [(48, 64), (32, 32)], ids=["stretched", "model-size"])
def test_frames_written_into_the_input_buffer_match_the_copying_path(classifier, view, size):
    photo = np.random.default_rng(3).integers(0, 256, (*size, 3), dtype=np.uint8)
    np.testing.assert_array_equal(shown_to_model(classifier, photo, view), classifier._to_input(photo, view)[0])
    assert classifier.probabilities(photo, view).shape == (len(TINY_LABELS),)  # invoke() still allowed


def test_a_frame_that_fails_on_its_way_in_leaves_the_interpreter_usable(classifier, monkeypatch):
    from edge import imaging

    photo = make_photo(1, size=(48, 64))
    kept = []
    for bad in ((photo, "sideways"), (np.zeros((0, 10, 3), np.uint8), "original")):
        with pytest.raises(ValueError) as refused:
            classifier.probabilities(*bad)
        kept.append(refused.value)  # a caller keeping the error must not block later invokes
    real_view_into = imaging.view_into

    def failing_view_into(rgb, name, out, scratch):
        real_view_into(rgb, name, out, scratch)
        raise MemoryError("failed after writing")  # the frame holding `out` is in the traceback

    monkeypatch.setattr(imaging, "view_into", failing_view_into)
    with pytest.raises(MemoryError) as failed:
        classifier.probabilities(photo)
    kept.append(failed.value)
    monkeypatch.undo()
    assert classifier.classify(photo).label == TINY_LABELS[1]


def test_the_default_is_the_frames_as_they_are_and_unknown_views_are_refused(tiny_bundle, classifier):
    assert classifier.views == ("original",)
    for views in ([], ["sideways"]):
        with pytest.raises(ValueError, match="views must name one or more of original, mirrored, flipped, turned"):
            Classifier.from_path(tiny_bundle, threads=1, views=views)


def test_a_photo_at_model_size_and_the_same_photo_stretched_agree(classifier):
    photo = make_photo(1, size=(32, 32))
    assert classifier.classify(photo).label == classifier.classify(np.repeat(photo, 2, axis=1)).label


def test_rejects_images_that_are_not_rgb_uint8(classifier):
    with pytest.raises(ValueError, match="RGB uint8"):
        classifier.classify(np.zeros((32, 32), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        classifier.classify(np.zeros((32, 32, 3), np.float32))


def test_is_safe_to_share_between_threads(classifier):
    photo = make_photo(2)
    expected = classifier.probabilities(photo)
    results, errors = [], []

    def work():
        try:
            for _ in range(20):
                results.append(classifier.probabilities(photo))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(results) == 60
    assert all(np.array_equal(result, expected) for result in results)


def test_a_corrupt_model_file_is_one_clear_classifier_error(tiny_bundle, tmp_path):
    folder = copy_bundle(tiny_bundle, tmp_path)
    (folder / "model.tflite").write_bytes(b"this is not a flatbuffer" * 10)
    with pytest.raises(ClassifierError, match="not a loadable LiteRT model") as raised:
        Classifier(load_bundle(folder, verify_hash=False))
    assert "\n" not in str(raised.value)


def test_a_manifest_that_disagrees_with_the_model_is_refused(tiny_bundle, tmp_path):
    folder = copy_bundle(tiny_bundle, tmp_path)
    bundle = load_bundle(folder)
    wrong_size = dataclasses.replace(bundle.manifest, input=dataclasses.replace(bundle.manifest.input, height=64))
    with pytest.raises(BundleError, match="input shape"):
        Classifier(dataclasses.replace(bundle, manifest=wrong_size))
    wrong_quant = dataclasses.replace(bundle.manifest, output=dataclasses.replace(bundle.manifest.output, scale=0.5))
    with pytest.raises(BundleError, match="output quantisation"):
        Classifier(dataclasses.replace(bundle, manifest=wrong_quant))


def test_a_label_count_that_differs_from_the_output_is_refused(tiny_bundle, tmp_path):
    folder = copy_bundle(tiny_bundle, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["labels"] = [*TINY_LABELS, "paper"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "labels.txt").write_text("\n".join(manifest["labels"]) + "\n")
    with pytest.raises(BundleError, match="outputs 3 classes but labels.txt names 4"):
        Classifier.from_path(folder)


def test_edgetpu_requested_without_a_compiled_model_falls_back_to_cpu(tiny_bundle, caplog):
    classifier = Classifier.from_path(tiny_bundle, use_edgetpu=True)
    assert classifier.delegate == "cpu"
    assert "Edge TPU" in caplog.text
    assert classifier.classify(make_photo(0)).label == "cardboard"


def test_edgetpu_delegate_missing_falls_back_to_cpu(tiny_bundle, tmp_path, caplog):
    folder = copy_bundle(tiny_bundle, tmp_path)
    shutil.copy(folder / "model.tflite", folder / "model_edgetpu.tflite")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["edgetpu"] = {"model_file": "model_edgetpu.tflite"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    classifier = Classifier.from_path(folder, use_edgetpu=True)
    assert classifier.delegate == "cpu"
    assert "Edge TPU unavailable" in caplog.text


def test_an_edgetpu_model_that_does_not_match_its_hash_is_not_used(tiny_bundle, tmp_path, caplog):
    folder = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    shutil.copy(folder / "model.tflite", folder / "model_edgetpu.tflite")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["edgetpu"] = {"model_file": "model_edgetpu.tflite", "sha256": "0" * 64}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    classifier = Classifier.from_path(folder, use_edgetpu=True)
    assert classifier.delegate == "cpu"
    assert "model_edgetpu.tflite: sha256 does not match the manifest" in caplog.text
