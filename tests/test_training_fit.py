"""``python -m training.fit`` end to end on a tiny generated dataset, and its errors."""

import json
import re
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")

from tests.conftest import TINY_LABELS, write_class_folders  # noqa: E402
from training.fit import RUN_FILES, main  # noqa: E402

TINY = ["--weights", "none", "--image-size", "32", "--batch-size", "8", "--head-epochs", "1",
        "--finetune-epochs", "1", "--finetune-layers", "6", "--max-train-steps", "2"]


@pytest.mark.slow
def test_fit_writes_the_whole_run_folder(tmp_path):
    data = write_class_folders(tmp_path / "data", per_class=10)
    (data / "glass" / "broken.jpg").write_bytes(b"not an image")
    out = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(out), *TINY]) == 0
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "micro_f1", "per_class", "confusion_matrix"} <= metrics.keys()
    assert len(metrics["confusion_matrix"]) == 3
    assert sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
    split = json.loads((out / "split.json").read_text())
    assert "glass/broken.jpg" not in sum(split["splits"].values(), [])
    assert (out / "labels.txt").read_text().split() == ["cardboard", "glass", "metal"]
    assert "Skipped 1 unreadable or corrupt files: glass/broken.jpg." in (out / "report.md").read_text()
    # Beside the one-view figures, the test photos as the bin classifies them (reported only).
    assert metrics["bin_views"] == ["original", "mirrored", "flipped"]
    assert 0 <= metrics["bin_views_accuracy"] <= 1 and 0 <= metrics["bin_views_macro_f1"] <= 1
    assert "As the bin classifies by default (each photo original, mirrored, flipped, averaged)" in \
        (out / "report.md").read_text()


@pytest.mark.slow
def test_a_run_with_ema_averages_in_both_phases_and_keeps_the_setting(tmp_path, monkeypatch):
    import training.callbacks
    import training.schedules

    asked = []
    make_optimizer, epoch_callbacks = training.schedules.make_optimizer, training.callbacks.epoch_callbacks
    monkeypatch.setattr(training.schedules, "make_optimizer",
                        lambda *args, **kw: asked.append(("optimizer", args[-1])) or make_optimizer(*args, **kw))
    monkeypatch.setattr(training.callbacks, "epoch_callbacks",
                        lambda ema, *rest: asked.append(("callbacks", ema)) or epoch_callbacks(ema, *rest))
    data = write_class_folders(tmp_path / "data", per_class=10)
    (tmp_path / "ema.yaml").write_text("ema: 0.9\n")
    out = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(out), "--config", str(tmp_path / "ema.yaml"), *TINY]) == 0
    assert "ema: 0.9" in (out / "config.yaml").read_text()
    assert asked == [("optimizer", 0.9), ("callbacks", 0.9)] * 2  # head, then fine-tune
    phases = [line.split(",")[1] for line in (out / "history.csv").read_text().splitlines()[1:]]
    assert phases == ["head", "finetune"]


@pytest.mark.parametrize("args, message", [
    (["--data", "{tmp}/nowhere"], "data folder not found"),
    (["--data", "{tmp}/adam.yaml"], "adam.yaml: is a file, not a data folder"),
    (["--data", "{data}", "--backbone", "vgg99"], "unknown backbone"),
    (["--data", "{data}", "--weights", "{tmp}/no/preset"], "preset folder not found"),
    (["--data", "{data}", "--backbone", "mobilenet_v3_small", "--weights", "{tmp}/no.weights.h5"],
     "no.weights.h5: weights file not found"),
    (["--data", "{data}", "--image-size", "0"], "options: image_size: Input should be greater than or equal to 32"),
    (["--data", "{data}", "--seeds", "0,a"], "--seeds: expected comma-separated whole numbers"),
    (["--data", "{data}", "--seeds", ""], "--seeds: expected comma-separated whole numbers"),
    (["--data", "{data}", "--backbone", "efficientnet_lite1", "--weights", "default"],
     "weights: efficientnet_lite1 has no online preset"),
    (["--data", "{data}", "--config", "{tmp}/adam.yaml"], "adam.yaml: optimizer: Input should be 'adamw' or 'sgd'"),
    (["--data", "{data}", "--split-file", "{tmp}/split.json"], "not in"),
    (["--data", "{data}", "--config", "{tmp}/bad.yaml"], "bad.yaml: learning_rate: unknown key"),
    (["--data", "{data}", "--split-file", "{tmp}/leaky.json"], "in more than one of train/val/test: glass/glass_0.jpg"),
    (["--data", "{data}", "--split-file", "{tmp}/no-metal.json"], "no training images for metal"),
    (["--data", "{data}", "--label-map", "{tmp}/padded.yaml"], "glass: ' can' is not a class name"),
    (["--data", "{data}", "--label-map", "{tmp}/boolean.yaml"],
     "a folder name written yes, on or true is read by YAML as true, not text: quote it ('yes': ...)"),
    (["--data", "{data}", "--config", "{tmp}/no-val.yaml"], "split: the val list is empty (val_fraction is 0)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    data = write_class_folders(tmp_path / "data", per_class=3)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["glass/x.jpg"], "val": [], "test": []}))
    files = {label: [f"{label}/{label}_{i}.jpg" for i in range(3)] for label in ("cardboard", "glass", "metal")}
    (tmp_path / "leaky.json").write_text(json.dumps({
        "train": files["cardboard"][:2] + files["glass"][:2], "val": [files["glass"][0]], "test": [files["metal"][0]]}))
    (tmp_path / "no-metal.json").write_text(json.dumps({
        "train": files["cardboard"][:2] + files["glass"][:2], "val": [files["metal"][1]], "test": [files["metal"][0]]}))
    (tmp_path / "bad.yaml").write_text("learning_rate: 0.1\n")
    (tmp_path / "adam.yaml").write_text("optimizer: adam\n")
    (tmp_path / "padded.yaml").write_text('glass: " can"\n')  # trained for hours, then refused by the converter
    (tmp_path / "boolean.yaml").write_text("yes: can\n")
    (tmp_path / "no-val.yaml").write_text("val_fraction: 0\n")
    args = [a.format(tmp=tmp_path, data=data) for a in args]
    assert main([*TINY, *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("args", [
    ["--data", "{tmp}/nowhere"],
    ["--data", "{data}", "--backbone", "vgg99"],
    ["--data", "{data}", "--split-file", "{tmp}/split.json"],
    ["--data", "{data}", "--image-size", "0"],
    ["--data", "{data}", "--head-epochs", "0", "--finetune-epochs", "0"],
])
def test_bad_input_fails_before_tensorflow_is_imported(tmp_path, args):
    # Importing TensorFlow takes seconds: a typo must not wait for it.
    data = write_class_folders(tmp_path / "data", per_class=3)
    (tmp_path / "split.json").write_text(json.dumps({"train": ["glass/x.jpg"], "val": [], "test": []}))
    args = [a.format(tmp=tmp_path, data=data) for a in args] + ["--out", str(tmp_path / "run")]
    script = ("import sys; from training.fit import main; code = main(sys.argv[1:]); "
              "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr


def test_a_folder_name_no_model_can_carry_as_a_label_stops_the_run_before_tensorflow(tmp_path, capsys):
    data = write_class_folders(tmp_path / "data", labels=("glass", "metal "), per_class=3)
    script = ("import sys; from training.fit import main; code = main(sys.argv[1:]); "
              "print(code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script, *TINY, "--data", str(data), "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert "'metal ': not a class name a model can carry" in result.stderr


@pytest.mark.parametrize("where", ["the file itself", "under the file"])
def test_an_out_that_a_file_blocks_is_refused_before_any_work(tmp_path, capsys, where):
    data = write_class_folders(tmp_path / "data", per_class=4)
    (tmp_path / "afile").write_text("in the way")
    out = tmp_path / "afile" if where == "the file itself" else tmp_path / "afile" / "run"
    assert main(["--data", str(data), "--out", str(out), *TINY]) == 2
    assert f"cannot be a run folder: {tmp_path / 'afile'} is a file" in capsys.readouterr().err


@pytest.mark.parametrize("layout, message", [
    ("one folder too high", "only one class, 'photos': a classifier needs two or more (are the class folders "
                            "one level deeper"),
    ("a label map onto one class", "only one class, 'metal'"),
])
def test_a_dataset_of_one_class_is_refused_before_tensorflow(tmp_path, capsys, layout, message):
    data = write_class_folders(tmp_path / "data" / "photos", per_class=4)
    args = ["--data", str(data.parent), "--out", str(tmp_path / "run"), *TINY]
    if layout == "a label map onto one class":
        (tmp_path / "all.yaml").write_text("cardboard: metal\nglass: metal\n")
        args = ["--data", str(data), "--out", str(tmp_path / "run"), "--label-map", str(tmp_path / "all.yaml"), *TINY]
    code = subprocess.run([sys.executable, "-c", "import sys; from training.fit import main; "
                           "code = main(sys.argv[1:]); print('tensorflow' in sys.modules); sys.exit(code)", *args],
                          capture_output=True, text=True)
    assert code.returncode == 2 and message in code.stderr and code.stdout.strip() == "False"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("steps", ["0", "-1"])
def test_a_step_cap_below_one_is_a_usage_error_not_a_silent_full_epoch(tmp_path, capsys, steps):
    with pytest.raises(SystemExit) as caught:
        main(["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--max-train-steps", steps])
    assert caught.value.code == 2 and "expected a whole number of 1 or more" in capsys.readouterr().err


def test_a_label_named_twice_is_refused_before_training(tmp_path, capsys):
    data = write_class_folders(tmp_path / "data", per_class=4)
    assert main(["--data", str(data), "--out", str(tmp_path / "run"), "--labels", "cardboard,cardboard,glass,metal",
                 *TINY]) == 2
    assert "labels: cardboard named twice" in capsys.readouterr().err


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_text("precious")
    assert main(["--data", str(tmp_path), "--out", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_weights_that_cannot_load_leave_no_half_written_run_folder(tmp_path, capsys):
    # Otherwise the corrected command is refused: "run folder exists and is not empty".
    data = write_class_folders(tmp_path / "data", per_class=4)
    not_a_preset = tmp_path / "downloads"
    not_a_preset.mkdir()
    out = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(out), *TINY, "--weights", str(not_a_preset)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: --weights {not_a_preset}: cannot load keras-hub preset")
    assert not out.exists() or not any(out.iterdir())


def test_repeated_seeds_share_one_generated_split(tmp_path):
    from training.config import TrainConfig
    from training.fit import prepare_data

    data = write_class_folders(tmp_path / "data", per_class=12)
    base = TrainConfig(data=str(data))
    _, seed_0, _ = prepare_data(base.override(seed=0))
    _, seed_1, _ = prepare_data(base.override(seed=1))
    _, seed_1_same_split, _ = prepare_data(base.override(seed=1, split_seed=0))
    assert seed_0 != seed_1  # a generated split follows the seed ...
    assert seed_1_same_split == seed_0  # ... unless split_seed pins it, as --seeds does


def test_a_class_too_small_for_val_and_test_is_named_before_training(tmp_path, capsys):
    from training.config import TrainConfig
    from training.fit import prepare_data

    data = write_class_folders(tmp_path / "data", per_class=12)
    extra = write_class_folders(tmp_path / "extra", labels=("a", "b", "c", "battery"), per_class=2)  # photos unlike the others
    (extra / "battery").rename(data / "battery")
    _, split, _ = prepare_data(TrainConfig(data=str(data)))
    assert "battery" not in {label for _, label in split["val"] + split["test"]}
    err = capsys.readouterr().err
    assert "warning: split: no val images for battery" in err and "warning: split: no test images for battery" in err


def test_a_run_whose_loss_becomes_nan_fails_instead_of_being_saved_as_a_model(tmp_path, capsys):
    data = write_class_folders(tmp_path / "data", per_class=12)
    (tmp_path / "diverge.yaml").write_text("head_lr: 1.0e+30\nwarmup_epochs: 0\n")
    out = tmp_path / "run"
    assert main(["--data", str(data), "--out", str(out), *TINY, "--config", str(tmp_path / "diverge.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # 2 steps: the last update shows in no loss, only weights
    assert err.startswith("error: training diverged: the weights became infinite or NaN in head epoch 1")
    assert "head_lr" in err and not (out / "metrics.json").exists() and not (out / "model.keras").exists()
    every_step = TINY[:TINY.index("--max-train-steps")]
    out = tmp_path / "run2"
    assert main(["--data", str(data), "--out", str(out), *every_step, "--config", str(tmp_path / "diverge.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(r"error: training diverged: the loss became nan in head epoch 1, step \d", err), err
    assert not (out / "metrics.json").exists() and not (out / "model.keras").exists()


def test_ctrl_c_is_one_line_that_says_where_the_unfinished_run_is(tmp_path, capsys, monkeypatch):
    import training.fit

    def interrupted(config, run_dir, max_train_steps=None):
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text("")
        raise KeyboardInterrupt

    monkeypatch.setattr(training.fit, "train_one", interrupted)
    data = write_class_folders(tmp_path / "data", per_class=2)
    assert main(["--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 130
    assert capsys.readouterr().err.strip() == (f"interrupted; the unfinished run is left in {tmp_path / 'run'} "
                                               f"(delete it or choose another --out)")


def split_file_naming_five_of_six_photos(tmp_path) -> tuple[dict, list[str]]:
    data = write_class_folders(tmp_path / "data", per_class=6)
    named = {"train": [f"{label}/{label}_{i}.jpg" for label in TINY_LABELS for i in (0, 1, 2)],
             "val": [f"{label}/{label}_3.jpg" for label in TINY_LABELS],
             "test": [f"{label}/{label}_4.jpg" for label in TINY_LABELS]}
    (tmp_path / "split.json").write_text(json.dumps(named))
    return named, ["--data", str(data), "--out", str(tmp_path / "run"), "--split-file", str(tmp_path / "split.json")]


def test_unlisted_train_adds_the_photos_a_split_file_leaves_out_to_train_only(tmp_path, capsys):
    from training.fit import parse_args, prepare_data, resolve_config

    named, common = split_file_naming_five_of_six_photos(tmp_path)
    data = tmp_path / "data"
    _, split, notes = prepare_data(resolve_config(parse_args(common)))
    assert len(split["train"]) == 9 and "3 photos in" in capsys.readouterr().err and "3 photos in" in notes[0]
    _, split, notes = prepare_data(resolve_config(parse_args([*common, "--unlisted", "train"])))
    assert len(split["train"]) == 12 and [rel for rel, _ in split["test"]] == named["test"]
    assert notes == ["note: training on 3 photos the split file does not name"]
    capsys.readouterr()
    prepare_data(resolve_config(parse_args(["--data", str(data), "--out", str(tmp_path / "run"),
                                            "--unlisted", "train"])))
    assert "--unlisted has no effect without --split-file" in capsys.readouterr().err


@pytest.mark.slow
def test_the_report_says_how_many_photos_beyond_the_split_file_a_run_trained_on(tmp_path):
    _, common = split_file_naming_five_of_six_photos(tmp_path)
    assert main([*common, "--unlisted", "train", *TINY]) == 0
    assert "Split: training on 3 photos the split file does not name." in \
        (tmp_path / "run" / "report.md").read_text()


def test_seeds_repeat_the_run_on_the_first_seeds_split_and_summarise_mean_and_std(tmp_path, capsys, monkeypatch):
    import training.fit

    runs = []

    def fake_train_one(config, run_dir, max_train_steps=None):  # one real run is tested above
        runs.append((config.seed, config.split_seed, run_dir.name))
        run_dir.mkdir(parents=True)
        accuracy = {3: 0.8, 4: 0.9}[config.seed]
        return {"accuracy": accuracy, "macro_f1": accuracy, "micro_f1": accuracy,
                "per_class": {"glass": {"f1": accuracy}}}

    monkeypatch.setattr(training.fit, "train_one", fake_train_one)
    data = write_class_folders(tmp_path / "data", per_class=10)
    out = tmp_path / "runs"
    assert main(["--data", str(data), "--out", str(out), "--seeds", "3,4", *TINY]) == 0
    assert runs == [(3, 3, "seed-3"), (4, 3, "seed-4")]  # every seed on the first seed's split
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [3, 4]
    assert summary["metrics"]["accuracy"] == pytest.approx({"mean": 0.85, "std": 0.0707107})  # sample std
    printed = capsys.readouterr()
    assert "accuracy: 0.8500 ± 0.0707" in printed.err
    assert json.loads(printed.out)["accuracy"] == pytest.approx({"mean": 0.85, "std": 0.0707107})


def test_labels_on_the_command_line_are_split_and_trimmed_as_in_a_config_file(tmp_path):
    from training.fit import parse_args, resolve_config

    data = write_class_folders(tmp_path / "data", per_class=2)
    args = parse_args(["--data", str(data), "--out", str(tmp_path / "run"), "--labels", "glass, metal,cardboard"])
    assert resolve_config(args).labels == ["glass", "metal", "cardboard"]


@pytest.mark.slow
def test_a_final_fit_trains_on_train_and_val_keeps_its_last_epoch_and_claims_no_val_score(tmp_path, capsys,
                                                                                           monkeypatch):
    import training.losses
    import training.pipeline

    trained_on, counted = [], []
    make_dataset, class_weights = training.pipeline.make_dataset, training.losses.class_weights
    monkeypatch.setattr(training.pipeline, "make_dataset", lambda *args, **kw: (
        trained_on.extend(rel for rel, _ in kw["items"]) if kw.get("training") else None) or make_dataset(*args, **kw))
    monkeypatch.setattr(training.losses, "class_weights",
                        lambda counts, *rest: counted.append(sum(counts)) or class_weights(counts, *rest))
    data = write_class_folders(tmp_path / "data", per_class=10)
    (tmp_path / "final.yaml").write_text("final_fit: true\nclass_weights: effective\n")
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--config", str(tmp_path / "final.yaml"), *TINY,
            "--finetune-epochs", "2"]
    assert main(args) == 0
    split = json.loads((out / "split.json").read_text())["splits"]
    assert sorted(trained_on) == sorted(split["train"] + split["val"]) and counted == [len(trained_on)]
    assert "final_fit: true" in (out / "config.yaml").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final_fit"] is True and metrics["val_macro_f1"] is None
    assert metrics["best_epoch"] == "finetune 2"  # the last, whatever val says
    trained = len(split["train"]) + len(split["val"])
    assert f"final fit on train + val ({trained} images): the last epoch kept (finetune 2)" in \
        (out / "report.md").read_text()
    # A run started from it must not count those val photos as unseen.
    again = ["--data", str(data), "--out", str(tmp_path / "again"), "--init-from", str(out), *TINY]
    assert main(again) == 2
    assert "it is a final fit, which trained on its val photos too" in capsys.readouterr().err


def test_final_fit_from_a_recipe_can_be_turned_off_on_the_command_line(tmp_path):
    from training.fit import parse_args, resolve_config

    data = write_class_folders(tmp_path / "data", per_class=2)
    (tmp_path / "final.yaml").write_text("final_fit: true\n")
    common = ["--data", str(data), "--out", str(tmp_path / "run"), "--config", str(tmp_path / "final.yaml")]
    assert resolve_config(parse_args(common)).final_fit is True
    assert resolve_config(parse_args([*common, "--no-final-fit"])).final_fit is False


def write_earlier_run(folder, final_fit: bool, split: dict) -> None:
    """A finished run's files as check_against reads them."""
    import yaml

    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump({"final_fit": final_fit}))
    (folder / "labels.txt").write_text("glass\n")
    (folder / "split.json").write_text(json.dumps({"splits": split}))


@pytest.mark.parametrize("earlier_final, now_final, refusal", [
    (True, True, None),  # both train on val: only the test photos must be new to it
    (True, False, "it is a final fit, which trained on its val photos too, and 1 of them"),
    (False, True, None),
    (False, False, None),
])
def test_a_start_run_must_not_have_trained_on_the_photos_this_run_holds_out(tmp_path, earlier_final, now_final,
                                                                            refusal):
    from training.config import TrainConfig
    from training.errors import ModelError
    from training.init_run import check_against

    write_earlier_run(tmp_path / "earlier", earlier_final, {"train": ["glass/a.jpg"], "val": ["glass/b.jpg"],
                                                            "test": ["glass/c.jpg"]})
    config = TrainConfig(init_from=str(tmp_path / "earlier"), final_fit=now_final)
    split = {name: [(f"glass/{rel}.jpg", "glass")] for name, rel in (("train", "a"), ("val", "b"), ("test", "c"))}
    if refusal is None:
        check_against(config, ["glass"], split)
    else:
        with pytest.raises(ModelError, match=refusal):
            check_against(config, ["glass"], split)
    # Whatever the two runs are, one that trained on this run's test photos is refused.
    leaky = {**split, "test": [("glass/a.jpg", "glass")]}
    with pytest.raises(ModelError, match=r"it trained on \d of this run's"):
        check_against(config, ["glass"], leaky)


@pytest.mark.slow
def test_a_run_can_start_from_an_earlier_runs_weights_and_refuses_one_that_does_not_fit(tmp_path, capsys):
    import keras
    import numpy as np

    data = write_class_folders(tmp_path / "data", per_class=10)
    first = tmp_path / "first"
    assert main(["--data", str(data), "--out", str(first), *TINY]) == 0
    same_split = ["--split-file", str(first / "split.json")]
    whole = ["--weights", "none", "--image-size", "32", "--batch-size", "8", "--head-epochs", "0",
             "--finetune-epochs", "1", "--max-train-steps", "2", *same_split]
    second = tmp_path / "second"
    # Another seed: had the weights not been loaded, its random start would be far from the first run's.
    assert main(["--data", str(data), "--out", str(second), "--init-from", str(first), "--seed", "1", *whole]) == 0
    assert "starting from the weights of" in capsys.readouterr().err
    assert (second / "config.yaml").read_text().count(f"init_from: {first}") == 1
    assert f"Started from the weights of `{first}`" in (second / "report.md").read_text()
    before = keras.saving.load_model(first / "model.keras", compile=False).get_weights()
    after = keras.saving.load_model(second / "model.keras", compile=False).get_weights()
    assert all(np.allclose(a, b, atol=0.05) for a, b in zip(before, after))


@pytest.mark.parametrize("change, message", [
    ("image_size", "its image_size is 32, this run's 48; start from a run of the same model"),
    ("unfinished", "not a finished run folder (metrics.json missing; a run still training has no metrics.json yet)"),
    ("not_a_run", "not a finished run folder"),
    ("damaged", "model.keras is not a saved Keras model"),
    ("other_classes", "its classes cardboard, glass, metal, paper are not this run's cardboard, glass, metal"),
    ("other_split", "it trained on"),
])
def test_a_start_run_that_does_not_fit_is_refused_in_one_line_before_training(tmp_path, capsys, change, message):
    import yaml

    data = write_class_folders(tmp_path / "data", per_class=6)
    run = tmp_path / "earlier"
    run.mkdir()
    config = {"backbone": "efficientnet_lite0", "image_size": 32, "dropout": 0.2}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    labels = ["cardboard", "glass", "metal"] + (["paper"] if change == "other_classes" else [])
    (run / "labels.txt").write_text("\n".join(labels) + "\n")
    files = sorted(str(path.relative_to(data)) for path in data.rglob("*.jpg"))
    train = files if change == "other_split" else []
    (run / "split.json").write_text(json.dumps({"splits": {"train": train, "val": [], "test": []}}))
    (run / "metrics.json").write_text("{}")
    import zipfile

    with zipfile.ZipFile(run / "model.keras", "w") as archive:
        archive.writestr("config.json", "{}")
    if change == "unfinished":
        (run / "metrics.json").unlink()
    if change == "not_a_run":
        run = data
    if change == "damaged":
        (run / "model.keras").write_bytes(b"half a zip")
    size = "48" if change == "image_size" else "32"
    args = ["--data", str(data), "--out", str(tmp_path / "new"), "--init-from", str(run),
            "--weights", "none", "--image-size", size, "--head-epochs", "0", "--finetune-epochs", "1"]
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
