"""classify CLI: one JSON line per image, clear errors and exit 2 for bad images or bundles."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from edge import classify_cli
from tests.conftest import REPO_ROOT, TINY_LABELS


def parse(argv):
    parser = argparse.ArgumentParser(prog="smartbin")
    classify_cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_prints_one_json_line_per_image(tiny_bundle, photo_folder, capsys):
    images = [str(photo_folder / "glass" / "glass_0.jpg"), str(photo_folder / "metal" / "metal_1.jpg")]
    assert classify_cli.run(parse(["classify", "--model", str(tiny_bundle), *images])) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == images
    assert [line["label"] for line in lines] == ["glass", "metal"]
    for line in lines:
        assert set(line) == {"path", "label", "confidence", "top3", "latency_ms"}
        assert 0 < line["confidence"] <= 1 and line["latency_ms"] > 0
        assert [label for label, _ in line["top3"]][0] == line["label"]
        assert {label for label, _ in line["top3"]} == set(TINY_LABELS)


def test_an_unreadable_image_gets_an_error_line_and_exit_2_after_the_rest(tiny_bundle, photo_folder,
                                                                         tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    good = str(photo_folder / "cardboard" / "cardboard_0.jpg")
    code = classify_cli.run(parse(["classify", "--model", str(tiny_bundle), str(broken), good]))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 2
    assert lines[0]["path"] == str(broken) and "not a readable image" in lines[0]["error"]
    assert lines[1]["label"] == "cardboard"


def test_a_missing_bundle_is_one_line_on_stderr_and_exit_2(tmp_path, capsys):
    assert classify_cli.run(parse(["classify", "--model", str(tmp_path / "nope"), "x.jpg"])) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "bundle folder not found" in captured.err


def test_a_corrupt_model_file_is_one_line_on_stderr_and_exit_2(tiny_bundle, tmp_path, capsys):
    import shutil

    folder = shutil.copytree(tiny_bundle, tmp_path / "corrupt")
    (folder / "model.tflite").write_bytes(b"garbage")
    assert classify_cli.run(parse(["classify", "--model", str(folder), "x.jpg"])) == 2
    assert "sha256 does not match" in capsys.readouterr().err


def test_runs_as_a_standalone_process_without_tensorflow(tiny_bundle, photo_folder):
    script = (
        "import argparse, sys\n"
        "from edge import classify_cli\n"
        "parser = argparse.ArgumentParser()\n"
        "classify_cli.add_parser(parser.add_subparsers())\n"
        "args = parser.parse_args(sys.argv[1:])\n"
        "code = args.func(args)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    image = str(photo_folder / "metal" / "metal_2.jpg")
    result = subprocess.run([sys.executable, "-c", script, "classify", "--model", str(tiny_bundle), image],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "metal"


def test_python_m_edge_classify(tiny_bundle, photo_folder):
    image = str(photo_folder / "glass" / "glass_2.jpg")
    result = subprocess.run([sys.executable, "-m", "edge", "classify", "--model", str(tiny_bundle), image],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] == "glass"


def test_without_model_the_shipped_model_classifies(photo_folder, tmp_path):
    shipped = json.loads((REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8" / "manifest.json").read_text())
    image = str(photo_folder / "glass" / "glass_2.jpg")
    result = subprocess.run([sys.executable, "-m", "edge", "classify", image],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["label"] in shipped["labels"]


def test_threads_and_views_follow_the_config_unless_given(tiny_bundle, photo_folder, monkeypatch, capsys):
    from edge.classifier import Classifier

    built = []
    real = Classifier.from_path.__func__
    monkeypatch.setattr(Classifier, "from_path", classmethod(
        lambda cls, path, **kw: built.append((kw["threads"], list(kw["views"]))) or real(cls, path, **kw)))
    image = str(photo_folder / "glass" / "glass_0.jpg")
    monkeypatch.setattr(classify_cli, "_configured_model", lambda: (str(tiny_bundle), 3, ["turned"]))
    assert classify_cli.run(parse(["classify", image])) == 0
    assert classify_cli.run(parse(["classify", "--threads", "1", "--views", "original, mirrored", image])) == 0
    assert classify_cli.run(parse(["classify", "--model", str(tiny_bundle), image])) == 0
    assert built == [(3, ["turned"]), (1, ["original", "mirrored"]), (2, ["original", "mirrored", "flipped"])]


def test_an_unknown_view_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["classify", "--views", "original,sideways", "x.jpg"])
    assert exit_info.value.code == 2
    assert "--views: expected views from original, mirrored, flipped, turned" in capsys.readouterr().err


def test_zero_threads_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["classify", "--threads", "0", "x.jpg"])
    assert exit_info.value.code == 2
    assert "--threads: must be 1 or more" in capsys.readouterr().err


def test_a_thread_count_that_is_not_a_number_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["classify", "--threads", "abc", "photo.jpg"])
    assert exit_.value.code == 2
    assert "argument --threads: expected a whole number, got 'abc'" in capsys.readouterr().err
