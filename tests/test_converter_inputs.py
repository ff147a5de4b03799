"""The converter's inputs: run folders, data folders, output folders, calibration sampling.

Everything here fails (or succeeds) before TensorFlow is imported, so these tests are fast.
"""

from __future__ import annotations

import json
import shutil
import os
import subprocess
import sys
from collections import Counter

import pytest

from converter.build import check_output_folder
from converter.cli import main
from converter.dataset import stratified_sample
from converter.quantize import anchor_input_range
from converter.runfolder import Item, load_run
from tests.conftest import REPO_ROOT, TINY_LABELS
from tests.converter_run_factory import write_run_folder


@pytest.fixture
def run_dir(tmp_path):
    return write_run_folder(tmp_path)


def error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


class TestRunFolder:
    def test_reads_labels_splits_config_and_metrics(self, run_dir):
        run = load_run(run_dir)
        assert run.labels == TINY_LABELS
        assert len(run.splits["train"]) == 15 and len(run.splits["test"]) == 6
        assert run.backbone == "tiny_cnn" and run.image_size == 32
        assert run.metrics["accuracy"] == 1.0

    def test_class_comes_from_the_label_map_when_split_json_has_one(self, run_dir):
        split = json.loads((run_dir / "split.json").read_text())
        split["labels"] = {"glass/glass_0.jpg": "metal"}
        (run_dir / "split.json").write_text(json.dumps(split))
        run = load_run(run_dir)
        assert run.label_of("glass/glass_0.jpg") == "metal"
        assert run.label_of("glass/glass_1.jpg") == "glass"

    def test_folders_merged_by_a_label_map_are_listed_for_the_manifest(self, run_dir):
        split = json.loads((run_dir / "split.json").read_text())
        split["labels"] = {name: "metal" for names in split["splits"].values() for name in names
                           if name.startswith("glass/")}
        (run_dir / "split.json").write_text(json.dumps(split))
        assert load_run(run_dir).folder_labels() == {"glass": "metal"}
        split["labels"] = {}
        (run_dir / "split.json").write_text(json.dumps(split))
        assert load_run(run_dir).folder_labels() == {}

    def test_a_folder_named_on_a_mac_is_its_own_label_not_a_mapping(self, run_dir):
        # Decomposed "ü" in the folder name, composed in the label training gave it: no label_map (schema 1).
        composed, decomposed = "gl\u00fcs", "glu\u0308s"
        (run_dir / "labels.txt").write_text(f"cardboard\n{composed}\nmetal\n", encoding="utf-8")
        split = json.loads((run_dir / "split.json").read_text())
        split["splits"] = {name: [entry.replace("glass/", f"{decomposed}/") for entry in entries]
                           for name, entries in split["splits"].items()}
        split["labels"] = {entry: composed for entries in split["splits"].values() for entry in entries
                           if entry.startswith(decomposed)}
        (run_dir / "split.json").write_text(json.dumps(split), encoding="utf-8")
        assert load_run(run_dir).folder_labels() == {}

    def test_a_folder_whose_files_carry_different_labels_has_no_single_truth(self, run_dir):
        split = json.loads((run_dir / "split.json").read_text())
        split["labels"] = {"glass/glass_0.jpg": "metal"}  # one file relabelled, the others stay glass
        (run_dir / "split.json").write_text(json.dumps(split))
        assert load_run(run_dir).folder_labels() == {}

    def test_data_folder_from_split_json_relative_to_the_runs_parent(self, run_dir, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path.parent)  # "photos" does not exist here, only beside the run
        assert load_run(run_dir).resolve_data_dir(None) == run_dir.parent / "photos"

    def test_data_folder_relative_to_where_training_ran_is_found_from_anywhere(self, tmp_path, monkeypatch):
        # Trained from the project folder: split.json says "data/photos", the run is runs/run.
        project = tmp_path / "project"
        run_dir = write_run_folder(project / "runs", data_name="photos")
        (project / "runs" / "photos").rename(project / "photos")
        split = json.loads((run_dir / "split.json").read_text())
        split["data"] = "photos"
        (run_dir / "split.json").write_text(json.dumps(split))
        monkeypatch.chdir(tmp_path)  # converting from somewhere else entirely
        found = load_run(run_dir).resolve_data_dir(None)
        assert found.resolve() == (project / "photos").resolve()

    def test_data_folder_recorded_as_training_resolved_it_is_found_wherever_the_run_was_copied(
            self, run_dir, monkeypatch, tmp_path):
        split = json.loads((run_dir / "split.json").read_text())
        (run_dir / "split.json").write_text(json.dumps({**split, "data_resolved": str(tmp_path / "photos")}))
        copy = shutil.copytree(run_dir, tmp_path / "deep" / "x" / "y" / "run")
        monkeypatch.chdir("/")
        assert load_run(copy).resolve_data_dir(None) == tmp_path / "photos"

    def test_a_run_named_after_its_data_folder_is_never_taken_for_the_data(self, tmp_path, monkeypatch):
        # Trained from the project folder with --data base --out runs/base; converted from runs/.
        project = tmp_path / "project"
        run_dir = write_run_folder(project / "runs", data_name="base", run_name="base-run")
        (project / "runs" / "base").rename(project / "base")
        run_dir = run_dir.rename(project / "runs" / "base")
        monkeypatch.chdir(project / "runs")
        assert load_run("base").resolve_data_dir(None).resolve() == (project / "base").resolve()

    def test_a_run_without_its_config_is_not_converted(self, run_dir, capsys):
        # Without it the converter cannot tell a final fit (trained on val) from a run it may gate on val.
        (run_dir / "config.yaml").unlink()
        assert main([str(run_dir), "--out", str(run_dir.parent / "bundle")]) == 2
        assert "no config.yaml (is this a run folder written by training.fit?)" in error_line(capsys)

    def test_a_run_stopped_before_it_finished_is_not_converted(self, run_dir, capsys):
        (run_dir / "metrics.json").unlink()  # training.fit writes it last
        assert main([str(run_dir), "--out", str(run_dir.parent / "bundle")]) == 2
        assert "not a finished run (metrics.json missing: training was stopped or is still running)" in \
            error_line(capsys)

    def test_data_folder_falls_back_to_smartbin_data(self, run_dir, monkeypatch, tmp_path):
        moved = tmp_path / "elsewhere"
        (run_dir.parent / "photos").rename(moved)
        monkeypatch.setenv("SMARTBIN_DATA", str(moved))
        assert load_run(run_dir).resolve_data_dir(None) == moved

    def test_items_carry_class_indices_in_label_order(self, run_dir):
        run = load_run(run_dir)
        items = run.items("test", run.resolve_data_dir(None))
        assert [item.label_index for item in items] == [0, 0, 1, 1, 2, 2]
        assert all(item.path.is_file() for item in items)


class TestBadInputExitsTwo:
    @pytest.mark.parametrize("option, value, message", [
        ("--max-drop", "nan", "must be a finite number"),
        ("--max-drop", "-1", "must be a finite number of 0 or more"),
        ("--seed", "-1", "must be 0 or more"),
        ("--significance", "1.5", "must be between 0 and 1"),
        ("--significance", "nan", "must be between 0 and 1"),
        ("--name", "../elsewhere", "'../elsewhere' is not a plain folder name (use --out for a path)"),
        ("--name", "a/b", "is not a plain folder name"),
        ("--name", ".hidden", "is not a plain folder name"),
    ])
    def test_options_the_gate_or_sampler_cannot_use(self, run_dir, capsys, option, value, message):
        assert main(["run", str(run_dir), option, value]) == 2
        assert message in capsys.readouterr().err

    def test_run_folder_without_model(self, run_dir, tmp_path, capsys):
        (run_dir / "model.keras").unlink()
        assert main([str(run_dir), "--out", str(tmp_path / "b")]) == 2
        assert "no model.keras" in error_line(capsys)

    def test_missing_run_folder(self, tmp_path, capsys):
        assert main([str(tmp_path / "nope"), "--out", str(tmp_path / "b")]) == 2
        assert "run folder not found" in error_line(capsys)

    def test_duplicate_labels(self, run_dir, tmp_path, capsys):
        (run_dir / "labels.txt").write_text("glass\nglass\nmetal\n")
        assert main([str(run_dir), "--out", str(tmp_path / "b")]) == 2
        assert "duplicate labels glass" in error_line(capsys)

    def test_data_folder_whose_classes_do_not_match_labels(self, run_dir, tmp_path, capsys):
        other = tmp_path / "other"
        for name in ("paper", "plastic"):
            (other / name).mkdir(parents=True)
        assert main([str(run_dir), "--out", str(tmp_path / "b"), "--data", str(other)]) == 2
        line = error_line(capsys)
        assert "has classes paper, plastic but labels.txt names cardboard, glass, metal" in line

    def test_merged_classes_need_their_source_folders(self, run_dir, tmp_path, capsys):
        split = json.loads((run_dir / "split.json").read_text())
        split["splits"]["test"].append("bottles/bottle_1.jpg")
        split["labels"]["bottles/bottle_1.jpg"] = "glass"  # a label map merged "bottles" into glass
        (run_dir / "split.json").write_text(json.dumps(split))
        assert main([str(run_dir), "--out", str(tmp_path / "b")]) == 2
        assert ("data folder has classes cardboard, glass, metal but the run's split uses class folders "
                "bottles, cardboard, glass, metal") in error_line(capsys)

    def test_data_folder_missing_split_files(self, run_dir, tmp_path, capsys):
        (run_dir.parent / "photos" / "glass" / "glass_7.jpg").unlink()
        assert main([str(run_dir), "--out", str(tmp_path / "b")]) == 2
        assert "1 file(s) of the run's split are missing, e.g. glass/glass_7.jpg" in error_line(capsys)

    def test_no_data_folder_anywhere(self, run_dir, tmp_path, capsys, monkeypatch):
        monkeypatch.delenv("SMARTBIN_DATA", raising=False)
        (run_dir.parent / "photos").rename(tmp_path / "hidden")
        split = json.loads((run_dir / "split.json").read_text())
        absolute = str(tmp_path / "gone")  # training recorded it absolute: data and data_resolved agree
        (run_dir / "split.json").write_text(json.dumps({**split, "data": absolute, "data_resolved": absolute}))
        assert main([str(run_dir), "--out", str(tmp_path / "b")]) == 2
        line = error_line(capsys)
        assert "pass --data DIR or set SMARTBIN_DATA" in line and line.count(absolute) == 1  # each place tried once

    def test_unwritable_output_folder(self, run_dir, tmp_path, capsys):
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        assert main([str(run_dir), "--out", str(blocker / "bundle")]) == 2
        assert f"cannot write there ({blocker} is not a folder)" in error_line(capsys)
        assert main([str(run_dir), "--out", str(tmp_path / "new" / "deep" / "bundle"), "--data", "/nowhere"]) == 2
        assert not (tmp_path / "new").exists()  # a conversion that fails creates no folders

    def test_a_truncated_model_keras_is_named_as_such_before_tensorflow(self, run_dir, tmp_path, capsys):
        (run_dir / "model.keras").write_bytes(b"PK\x03\x04 truncated")
        assert main([str(run_dir), "--out", str(tmp_path / "b")]) == 2
        assert "model.keras: not a valid .keras file (truncated or corrupt?)" in error_line(capsys)

    def test_output_folder_that_is_not_a_bundle_is_never_replaced(self, run_dir, tmp_path, capsys):
        precious = tmp_path / "documents"
        precious.mkdir()
        (precious / "thesis.txt").write_text("keep me")
        assert main([str(run_dir), "--out", str(precious)]) == 2
        assert "not a model bundle (" in error_line(capsys)
        assert (precious / "thesis.txt").read_text() == "keep me"

    def test_a_manifest_json_alone_does_not_make_a_folder_a_bundle(self, run_dir, tmp_path, capsys):
        web_app = tmp_path / "webapp"
        web_app.mkdir()
        (web_app / "manifest.json").write_text('{"name": "my pwa"}')
        (web_app / "index.html").write_text("<html></html>")
        assert main([str(run_dir), "--out", str(web_app)]) == 2
        assert "not a model bundle (" in error_line(capsys)
        assert (web_app / "index.html").is_file()

    def test_a_bundle_holding_other_files_is_not_replaced(self, run_dir, tmp_path, capsys, tiny_bundle):
        import shutil

        bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
        (bundle / "NOTES.md").write_text("calibrated on the canteen photos")
        (bundle / ".DS_Store").write_bytes(b"\0")  # a file manager's: not worth refusing for
        assert main([str(run_dir), "--out", str(bundle)]) == 2
        assert "the bundle there also holds NOTES.md, which replacing it would delete" in error_line(capsys)

    def test_a_damaged_bundle_is_refused_with_the_reason(self, run_dir, tmp_path, capsys, tiny_bundle):
        import shutil

        bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
        (bundle / "labels.txt").unlink()
        assert main([str(run_dir), "--out", str(bundle)]) == 2
        assert f"--out {bundle}: folder exists and is not a model bundle (no labels.txt); refusing" in error_line(capsys)

    def test_edgetpu_needs_int8(self, run_dir, tmp_path, capsys):
        assert main([str(run_dir), "--out", str(tmp_path / "b"), "--quantize", "float16", "--edgetpu"]) == 2
        assert "--edgetpu needs --quantize int8" in error_line(capsys)

    def test_unknown_quantization_mode(self, run_dir, tmp_path, capsys):
        assert main([str(run_dir), "--out", str(tmp_path / "b"), "--quantize", "int4"]) == 2
        assert "invalid choice: 'int4'" in error_line(capsys)

    def test_corrupt_tflite_handed_to_bench(self, tmp_path, capsys):
        corrupt = tmp_path / "model.tflite"
        corrupt.write_bytes(b"TFL3" + os.urandom(200))
        assert main(["bench", str(corrupt), "--runs", "1"]) == 2
        assert "not a valid LiteRT model" in error_line(capsys)

    def test_bench_of_a_folder_that_is_not_a_bundle(self, tmp_path, capsys):
        assert main(["bench", str(tmp_path)]) == 2
        assert "no manifest.json" in error_line(capsys)

    def test_bench_bad_thread_list(self, tmp_path, capsys):
        assert main(["bench", str(tmp_path), "--threads", "1,x"]) == 2
        assert "comma-separated list of integers" in error_line(capsys)

    @pytest.mark.parametrize("command", [["bench", "BUNDLE", "--threads", "2,100000"], ["RUN", "--threads", "17"]])
    def test_more_threads_than_litert_takes_is_refused_before_any_work(self, tmp_path, capsys, command):
        # 100000 threads crashed LiteRT (a segfault in bench); the limit is model.threads' own.
        args = [str(tmp_path) if part in ("BUNDLE", "RUN") else part for part in command]
        assert main(args + (["--out", str(tmp_path / "b")] if "RUN" in command else [])) == 2
        assert "between 1 and 16" in error_line(capsys)

    def test_as_a_real_command(self, tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "converter", str(tmp_path / "nope"), "--out", str(tmp_path / "b")],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: run folder not found"]
        assert "tensorflow" not in done.stdout


def test_the_pipeline_comparison_leaves_out_exactly_the_photos_the_bin_could_not_read(tmp_path):
    from converter.build import items_read

    items = [Item(path=tmp_path / name, name=name, label_index=0) for name in ("a.jpg", "a.jpg.bak", "b.jpg")]
    kept = items_read(items, [f"{tmp_path / 'a.jpg'}: cannot decode the image"])
    assert [item.name for item in kept] == ["a.jpg.bak", "b.jpg"]


def test_existing_bundle_folder_may_be_replaced(tmp_path, tiny_bundle):
    import shutil

    check_output_folder(shutil.copytree(tiny_bundle, tmp_path / "bundle"))  # no error: write_bundle swaps it atomically


def test_bad_input_fails_before_tensorflow_is_imported(tmp_path):
    code = (
        "import sys\nfrom converter.cli import main\n"
        f"code = main([{str(tmp_path / 'nope')!r}, '--out', {str(tmp_path / 'b')!r}])\n"
        "assert code == 2\nassert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr


class TestCalibrationSample:
    def items(self, counts):
        return [Item(path=None, name=f"{label}/{i}", label_index=label)
                for label, count in enumerate(counts) for i in range(count)]

    def test_keeps_class_shares(self):
        sample = stratified_sample(self.items([100, 50, 250]), 80)
        assert len(sample) == 80
        assert Counter(item.label_index for item in sample) == {0: 20, 1: 10, 2: 50}

    def test_every_class_is_represented(self):
        sample = stratified_sample(self.items([1000, 2, 1000]), 20)
        assert {item.label_index for item in sample} == {0, 1, 2}

    def test_takes_everything_when_asked_for_more(self):
        items = self.items([3, 4])
        assert sorted(i.name for i in stratified_sample(items, 300)) == sorted(i.name for i in items)

    def test_is_seeded_and_mixes_classes(self):
        items = self.items([50, 50, 50])
        first = stratified_sample(items, 30, seed=3)
        assert first == stratified_sample(items, 30, seed=3)
        # Shuffled: the first ten are not all from one class.
        assert len({item.label_index for item in first[:10]}) > 1

    def test_no_duplicates(self):
        sample = stratified_sample(self.items([40, 41, 43]), 60)
        assert len({item.name for item in sample}) == 60


def test_input_range_anchor_marks_one_black_and_one_white_pixel():
    import numpy as np

    images = np.full((3, 8, 8, 3), 100, np.uint8)
    anchored = anchor_input_range(images)
    assert anchored.min() == 0 and anchored.max() == 255
    assert np.count_nonzero(anchored != images) == 6  # two pixels x three channels, first photo only
    assert images.max() == 100  # the caller's photos are untouched
