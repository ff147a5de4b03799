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


def test_a_model_file_given_for_its_bundle_folder_is_told_so(tiny_bundle, capsys):
    assert classify_cli.run(parse(["classify", "--model", str(tiny_bundle / "model.tflite"), "x.jpg"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.tflite: is a file; a model bundle is the folder that holds it" in err


def test_without_model_or_default_config_the_error_says_to_pass_model(tmp_path, capsys, monkeypatch):
    import edge.config

    # A pip install from a URL: no checkout's firmware_config/ or models/, no /etc/smartbin.
    monkeypatch.setattr(edge.config, "DEFAULT_CONFIG", tmp_path / "firmware_config" / "smartbin.yaml")
    monkeypatch.setattr(edge.config, "PACKAGE_ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    assert classify_cli.run(parse(["classify", "x.jpg"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bundle folder not found" in err and "pass --model BUNDLE" in err


def test_a_default_config_naming_a_missing_model_gets_no_pip_install_hint(tmp_path, capsys, monkeypatch):
    import edge.config

    config = tmp_path / "smartbin.yaml"  # e.g. /etc/smartbin/smartbin.yaml naming a removed bundle
    config.write_text(f"model:\n  path: {tmp_path / 'removed-bundle'}\n")
    monkeypatch.setattr(edge.config, "DEFAULT_CONFIG", config)
    assert classify_cli.run(parse(["classify", "x.jpg"])) == 2
    err = capsys.readouterr().err
    assert "removed-bundle: model bundle folder not found" in err and "pip install" not in err


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


@pytest.mark.parametrize("threads", ["0", "17", "99999"])  # 99999 crashed the process; the config allows 1-16
def test_a_thread_count_outside_the_configs_range_is_refused_by_the_parser(capsys, threads):
    with pytest.raises(SystemExit) as exit_info:
        parse(["classify", "--threads", threads, "x.jpg"])
    assert exit_info.value.code == 2
    assert f"--threads: must be 1 to 16, got {threads}" in capsys.readouterr().err


def test_an_image_that_would_unpack_beyond_the_bins_limit_is_refused_not_decoded(tiny_bundle, tmp_path, capsys):
    import cv2
    import numpy as np

    bomb = tmp_path / "bomb.png"
    cv2.imwrite(str(bomb), np.zeros((8000, 6000, 3), np.uint8))  # 48 MP in a small file
    assert classify_cli.run(parse(["classify", "--model", str(tiny_bundle), str(bomb)])) == 2
    line = json.loads(capsys.readouterr().out)
    assert "too large: 6000x8000 pixels (limit 40 megapixels)" in line["error"]


def test_a_file_name_that_is_not_utf8_comes_out_as_valid_json_text(tiny_bundle, photo_folder, tmp_path, capsys):
    import os

    odd = os.path.join(os.fsencode(tmp_path), b"caf\xe9.jpg")  # a Latin-1 name from an old camera card
    with open(odd, "wb") as out:
        out.write((photo_folder / "glass" / "glass_0.jpg").read_bytes())
    assert classify_cli.run(parse(["classify", "--model", str(tiny_bundle), os.fsdecode(odd)])) == 0
    out = capsys.readouterr().out
    out.encode("utf-8")  # strict: no lone surrogate for jq to trip on
    assert json.loads(out)["path"].endswith("caf\ufffd.jpg")


def test_output_cut_short_by_head_ends_quietly(tiny_bundle, photo_folder):
    images = [str(path) for path in sorted(photo_folder.rglob("*.jpg"))]
    command = " ".join([sys.executable, "-m", "edge", "classify", "--model", str(tiny_bundle), *images, "| head -1"])
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60,
                            cwd=REPO_ROOT)
    assert len(result.stdout.splitlines()) == 1 and "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr


def test_a_thread_count_that_is_not_a_number_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["classify", "--threads", "abc", "photo.jpg"])
    assert exit_.value.code == 2
    assert "argument --threads: expected a whole number, got 'abc'" in capsys.readouterr().err
