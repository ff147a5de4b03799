"""``python -m training.evaluate``: re-evaluates a saved run on its test split or on another folder."""

import json
import shutil

import pytest

pytest.importorskip("tensorflow")

from tests.conftest import write_class_folders  # noqa: E402
from training.evaluate import main as evaluate  # noqa: E402
from training.fit import main as fit  # noqa: E402

TINY = ["--weights", "none", "--image-size", "32", "--batch-size", "8", "--head-epochs", "1",
        "--finetune-epochs", "1", "--finetune-layers", "6", "--max-train-steps", "2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    data = write_class_folders(root / "data", per_class=10)
    assert fit(["--data", str(data), "--out", str(root / "run"), *TINY]) == 0
    return root


@pytest.mark.slow
def test_re_evaluating_the_test_split_reproduces_the_runs_figures(run, capsys):
    assert evaluate([str(run / "run")]) == 0
    again = json.loads((run / "run" / "eval-metrics.json").read_text())
    original = json.loads((run / "run" / "metrics.json").read_text())
    assert again["confusion_matrix"] == original["confusion_matrix"]
    assert again["accuracy"] == pytest.approx(original["accuracy"])
    report = (run / "run" / "eval-report.md").read_text()
    assert "`eval-confusion_matrix.png`" in report and "curves.png" not in report
    assert "on the test split of" in report and again["split"] == "test" and again["skipped"] == []
    assert (run / "run" / "eval-confusion_matrix.png").is_file()
    assert json.loads(capsys.readouterr().out)["n"] == original["n"]


@pytest.mark.slow
def test_another_folder_with_fewer_classes_is_scored_on_the_classes_it_has(run, tmp_path):
    other = shutil.copytree(run / "data", tmp_path / "other")
    shutil.rmtree(other / "metal")
    (other / "glass" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "eval"
    assert evaluate([str(run / "run"), "--data", str(other), "--out", str(out)]) == 0
    metrics = json.loads((out / "eval-metrics.json").read_text())
    assert metrics["n"] == 20 and metrics["per_class"]["metal"]["support"] == 0
    assert metrics["split"] == "all" and metrics["skipped"] == ["glass/broken.jpg"]
    assert "Skipped 1 unreadable or corrupt files: glass/broken.jpg." in (out / "eval-report.md").read_text()
    predicted_metal = sum(row[2] for row in metrics["confusion_matrix"])
    assert metrics["macro_excluded"] == ([] if predicted_metal else ["metal"])


def test_a_folder_with_classes_the_run_never_saw_is_exit_2(run, tmp_path, capsys):
    other = write_class_folders(tmp_path / "other", labels=("glass", "textiles"), per_class=2)
    assert evaluate([str(run / "run"), "--data", str(other)]) == 2
    assert ("textiles are not among the run's labels (cardboard, glass, metal); a --label-map can map folders "
            "onto them") in capsys.readouterr().err


def test_a_label_map_merges_a_raw_folders_classes_into_the_runs(run, tmp_path, capsys):
    other = write_class_folders(tmp_path / "other", labels=("glass", "tins"), per_class=2)
    (other / "glass" / "broken.jpg").write_bytes(b"not an image")
    label_map = tmp_path / "bins.yaml"
    label_map.write_text("tins: metal\n")
    out = tmp_path / "eval"
    assert evaluate([str(run / "run"), "--data", str(other), "--label-map", str(label_map), "--out", str(out)]) == 0
    metrics = json.loads((out / "eval-metrics.json").read_text())
    assert metrics["n"] == 4 and metrics["per_class"]["metal"]["support"] == 2
    assert "skipped 1 unreadable or corrupt files: glass/broken.jpg" in capsys.readouterr().err


def test_the_runs_data_folder_is_found_from_any_working_directory(run, tmp_path, monkeypatch, capsys):
    split = json.loads((run / "run" / "split.json").read_text())
    monkeypatch.chdir(tmp_path)  # not where training ran
    split["data"] = "elsewhere/data"  # a relative --data, from a folder that is neither here nor beside the run
    (run / "run" / "split.json").write_text(json.dumps(split))
    try:
        assert evaluate([str(run / "run"), "--out", str(tmp_path / "eval")]) == 0
    finally:
        split["data"] = split["data_resolved"]
        (run / "run" / "split.json").write_text(json.dumps(split))


def test_the_val_list_can_be_scored_with_the_probabilities_of_several_views_averaged(run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate([str(run / "run"), "--split", "val", "--views", "original,mirrored", "--out", str(out)]) == 0
    metrics = json.loads((out / "eval-metrics.json").read_text())
    val = json.loads((run / "run" / "split.json").read_text())["splits"]["val"]
    assert metrics["split"] == "val" and metrics["n"] == len(val)
    assert metrics["views"] == ["original", "mirrored"]
    report = (out / "eval-report.md").read_text()
    assert "on the val split of" in report and "averaged over the views original, mirrored" in report
    assert metrics["seen_in_training"] is False and "final fit" not in capsys.readouterr().err


@pytest.mark.slow
def test_scoring_a_final_fits_val_list_says_those_photos_were_trained_on(run, tmp_path, capsys):
    import yaml

    final = shutil.copytree(run / "run", tmp_path / "final")
    config = yaml.safe_load((final / "config.yaml").read_text())
    (final / "config.yaml").write_text(yaml.safe_dump({**config, "final_fit": True}))
    assert evaluate([str(final), "--split", "val", "--out", str(tmp_path / "val")]) == 0
    assert "is a final fit, which trained on its val photos" in capsys.readouterr().err
    assert json.loads((tmp_path / "val" / "eval-metrics.json").read_text())["seen_in_training"] is True
    assert "so these are training figures" in (tmp_path / "val" / "eval-report.md").read_text()
    # Its test list was never trained on: no warning there.
    assert evaluate([str(final), "--out", str(tmp_path / "test")]) == 0
    assert json.loads((tmp_path / "test" / "eval-metrics.json").read_text())["seen_in_training"] is False


def test_an_unknown_view_is_refused_by_the_parser(run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate([str(run / "run"), "--views", "sideways"])
    assert exit_info.value.code == 2
    assert "expected views from original, mirrored, flipped, turned" in capsys.readouterr().err


def test_predict_averages_each_view_of_every_image():
    import keras
    import numpy as np
    import tensorflow as tf

    from training.callbacks import predict

    images = np.random.default_rng(0).integers(0, 256, (4, 6, 5, 3)).astype("float32")
    inputs = keras.Input((6, 5, 3))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inputs)))
    dataset = tf.data.Dataset.from_tensor_slices((images, np.zeros(4))).batch(3)
    for views, flips in [(("original", "turned"), [lambda x: x, lambda x: x[:, ::-1, ::-1]]),
                         (("mirrored",), [lambda x: x[:, :, ::-1]]), (("flipped",), [lambda x: x[:, ::-1]])]:
        expected = np.mean([model.predict(np.ascontiguousarray(flip(images)), verbose=0) for flip in flips], axis=0)
        np.testing.assert_allclose(predict(model, dataset, views=views), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(model, dataset), model.predict(images, verbose=0), rtol=1e-5, atol=1e-6)


def test_split_is_refused_with_another_data_folder(run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate([str(run / "run"), "--data", str(run / "data"), "--split", "val"])
    assert exit_info.value.code == 2
    assert "--split chooses one of the run's own lists" in capsys.readouterr().err


def test_a_label_map_without_another_data_folder_is_refused_not_ignored(run, tmp_path, capsys):
    (tmp_path / "map.yaml").write_text("glass: metal\n")
    with pytest.raises(SystemExit) as exit_info:
        evaluate([str(run / "run"), "--label-map", str(tmp_path / "map.yaml")])
    assert exit_info.value.code == 2
    assert "--label-map maps the folders of --data" in capsys.readouterr().err


@pytest.mark.slow
def test_photos_gone_or_damaged_since_training_are_skipped_and_listed(run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    split_path = copy / "run" / "split.json"
    split = json.loads(split_path.read_text())
    split["data_resolved"] = str(copy / "data")
    split_path.write_text(json.dumps(split))
    gone, damaged = split["splits"]["test"][:2]
    (copy / "data" / gone).unlink()
    (copy / "data" / damaged).write_bytes(b"\xff\xd8\xff truncated")
    assert evaluate([str(copy / "run"), "--out", str(tmp_path / "eval")]) == 0
    assert "skipped 2 missing, unreadable or corrupt files" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "eval" / "eval-metrics.json").read_text())
    assert sorted(metrics["skipped"]) == sorted([gone, damaged])
    assert metrics["n"] == len(split["splits"]["test"]) - 2


@pytest.mark.parametrize("damage, message", [
    ("truncated model", "model.keras: not a loadable Keras model (truncated or corrupt)"),
    ("broken split", "split.json: a damaged run file"),
    ("broken config", "config.yaml: a damaged run file"),
    ("repeated label", "labels.txt must name each class once"),
    ("missing label", "the model has 3 outputs but labels.txt names 2 classes"),
    ("renamed labels", "split.json has classes cardboard, glass, metal that labels.txt does not name"),
])
def test_a_damaged_run_folder_is_one_line_and_exit_2(run, tmp_path, capsys, damage, message):
    damaged = shutil.copytree(run / "run", tmp_path / "damaged")
    if damage == "truncated model":
        (damaged / "model.keras").write_bytes((damaged / "model.keras").read_bytes()[:500])
    elif damage == "broken split":
        (damaged / "split.json").write_text("{ half")
    elif damage == "broken config":
        (damaged / "config.yaml").write_text("a: [unclosed")
    elif damage == "repeated label":
        (damaged / "labels.txt").write_text("cardboard\nglass\nglass\n")
    elif damage == "renamed labels":
        (damaged / "labels.txt").write_text("p\nq\nr\n")
    else:
        (damaged / "labels.txt").write_text("cardboard\nglass\n")
    assert evaluate([str(damaged)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_an_out_folder_that_cannot_be_made_and_a_zero_batch_are_refused_before_scoring(run, tmp_path, capsys):
    (tmp_path / "afile").write_text("in the way")
    assert evaluate([str(run / "run"), "--out", str(tmp_path / "afile" / "sub")]) == 2
    assert f"{tmp_path / 'afile'} is a file (choose a folder)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        evaluate([str(run / "run"), "--batch-size", "0"])
    assert caught.value.code == 2 and "expected a whole number of 1 or more" in capsys.readouterr().err


def test_a_run_whose_data_folder_moved_is_scored_on_its_own_list_where_smartbin_data_says(run, tmp_path,
                                                                                           monkeypatch, capsys):
    import json as json_module

    moved_run = shutil.copytree(run / "run", tmp_path / "run")
    split = json_module.loads((moved_run / "split.json").read_text())
    gone = tmp_path / "gone"
    (moved_run / "split.json").write_text(json_module.dumps({**split, "data": str(gone), "data_resolved": str(gone)}))
    monkeypatch.delenv("SMARTBIN_DATA", raising=False)
    assert evaluate([str(moved_run)]) == 2
    assert "set SMARTBIN_DATA to where it is now to score the run's own test list" in capsys.readouterr().err
    monkeypatch.setenv("SMARTBIN_DATA", str(run / "data"))
    assert evaluate([str(moved_run)]) == 0
    assert json_module.loads((moved_run / "eval-metrics.json").read_text())["n"] == len(split["splits"]["test"])


@pytest.mark.slow
def test_a_hand_edited_run_is_scored_by_its_model_a_bom_and_a_stale_image_size_notwithstanding(run, tmp_path, capsys):
    edited = shutil.copytree(run / "run", tmp_path / "edited")
    labels = (edited / "labels.txt").read_text()
    (edited / "labels.txt").write_text("\ufeff" + labels)  # as Windows Notepad saves it
    config = (edited / "config.yaml").read_text()
    (edited / "config.yaml").write_text(config.replace("image_size: 32", "image_size: 64"))
    assert evaluate([str(edited)]) == 0
    again = json.loads((edited / "eval-metrics.json").read_text())
    original = json.loads((run / "run" / "metrics.json").read_text())
    assert again["confusion_matrix"] == original["confusion_matrix"]
