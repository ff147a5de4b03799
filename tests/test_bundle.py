"""The bundle contract: a bundle round-trips and every broken bundle is refused with a clear error."""

import json
import os
import subprocess
import sys

import pytest

from edge.bundle import InputSpec, Manifest, OutputSpec, load_bundle, write_bundle
from edge.errors import BundleError


def manifest(**changes):
    values = dict(labels=("glass", "metal"), model_file="model.tflite", sha256="0" * 64,
                  input=InputSpec(height=8, width=8), output=OutputSpec(), backbone="tiny",
                  quantization="int8", created_at="2026-01-01T00:00:00+00:00")
    values.update(changes)
    return Manifest(**values)


@pytest.fixture
def bundle_dir(tmp_path):
    return write_bundle(tmp_path / "b", b"model-bytes", manifest()).path


def test_written_bundle_loads_back_with_its_hash(bundle_dir):
    bundle = load_bundle(bundle_dir)
    assert bundle.labels == ("glass", "metal")
    assert bundle.model_path.read_bytes() == b"model-bytes"
    assert len(bundle.manifest.sha256) == 64


def test_manifest_round_trips_through_json(bundle_dir):
    data = json.loads((bundle_dir / "manifest.json").read_text())
    assert Manifest.from_dict(data).to_dict() == data
    assert "label_map" not in data  # only runs trained with a label map carry one


def test_a_label_map_maps_source_folders_to_the_models_labels(tmp_path):
    bundle = write_bundle(tmp_path / "b", b"model-bytes", manifest(label_map={"tin": "metal", "jar": "glass"}))
    assert load_bundle(bundle.path).manifest.label_map == {"tin": "metal", "jar": "glass"}
    # Schema 2: an older smartbin (reads 1) refuses it by version, not with "unknown keys label_map".
    data = json.loads((bundle.path / "manifest.json").read_text())
    assert data["schema_version"] == 2 and Manifest.from_dict(data).to_dict() == data


def test_a_bundle_without_a_label_map_stays_schema_1(bundle_dir):
    assert json.loads((bundle_dir / "manifest.json").read_text())["schema_version"] == 1


def test_a_symlinked_bundle_folder_is_written_where_it_points_and_stays_a_link(tmp_path):
    real = write_bundle(tmp_path / "v1", b"one", manifest()).path
    (tmp_path / "current").symlink_to(real, target_is_directory=True)
    for content in (b"two", b"three"):  # twice: the second write used to crash
        write_bundle(tmp_path / "current", content, manifest())
    assert (tmp_path / "current").is_symlink()
    assert load_bundle(tmp_path / "current").model_path.read_bytes() == b"three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "v1"]  # no staging or .old left


def test_a_failed_write_leaves_no_half_bundle(tmp_path, monkeypatch):
    from pathlib import Path

    real_write = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name == "manifest.json":
            raise OSError(28, "No space left on device")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError):
        write_bundle(tmp_path / "b", b"model", manifest())
    assert list(tmp_path.iterdir()) == []


def test_a_failed_swap_puts_the_old_bundle_back_in_place(tmp_path, monkeypatch):
    from pathlib import Path

    write_bundle(tmp_path / "b", b"old model", manifest())
    real_rename = Path.rename

    def refuse_staging(self, target):
        if self.name.startswith(".b-"):  # the staged new bundle moving in
            raise OSError(5, "Input/output error")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_staging)
    with pytest.raises(OSError):
        write_bundle(tmp_path / "b", b"new model", manifest())
    assert load_bundle(tmp_path / "b").model_path.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # no .b.old or staging folder left


def test_replaced_model_file_fails_the_hash_check(bundle_dir):
    (bundle_dir / "model.tflite").write_bytes(b"other")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("labels_text, problem", [
    ("glass\nglass\n", "duplicate"),
    ("glass\n", "does not match"),
    ("\n", "non-empty"),
])
def test_bad_labels_file_is_refused(bundle_dir, labels_text, problem):
    (bundle_dir / "labels.txt").write_text(labels_text)
    with pytest.raises(BundleError, match=problem):
        load_bundle(bundle_dir)


def test_a_bundle_behind_a_folder_the_service_cannot_enter_is_a_bundle_error_not_a_traceback(bundle_dir, monkeypatch):
    # /opt/smartbin/models at 0700 root: the service user's is_dir() raised PermissionError (exit 1, retried).
    import edge.bundle

    real_stat = os.stat

    def denied(path, *args, **kwargs):
        if str(path) == str(bundle_dir):
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(edge.bundle.os, "stat", denied)
    with pytest.raises(BundleError, match="permission denied on the way to the model bundle"):
        load_bundle(bundle_dir)


def test_labels_saved_with_a_byte_order_mark_by_a_windows_editor_still_load(bundle_dir):
    text = (bundle_dir / "labels.txt").read_text(encoding="utf-8")
    (bundle_dir / "labels.txt").write_text("\ufeff" + text, encoding="utf-8")
    assert load_bundle(bundle_dir).labels == load_bundle(bundle_dir).manifest.labels


def test_labels_that_differ_from_the_manifest_say_how(bundle_dir):
    labels = (bundle_dir / "labels.txt").read_text(encoding="utf-8").split()
    (bundle_dir / "labels.txt").write_text("\n".join(reversed(labels)) + "\n", encoding="utf-8")
    with pytest.raises(BundleError, match=f"labels.txt does not match the manifest's labels "
                                          f"\\({', '.join(reversed(labels))} against {', '.join(labels)}\\)"):
        load_bundle(bundle_dir)


@pytest.mark.parametrize("key, value, problem", [
    ("schema_version", 99, "unknown schema_version"),
    ("quantization", "int4", "quantization"),
    ("surprise", 1, "unknown keys surprise"),
    ("sha256", "z" * 64, "sha256"),
    ("model_file", 5, "model_file"),
    ("metrics", [0.9], "metrics"),
    ("edgetpu", "yes", "edgetpu"),
    ("edgetpu", {"model_file": "../elsewhere.tflite"}, "edgetpu.model_file"),
    ("input", {"height": "32", "width": 32}, "input.height"),
    ("output", {"scale": "1/256"}, "output.scale"),
    ("label_map", {"tin": "aluminium"}, "label_map"),
    ("label_map", ["tin"], "label_map"),
])
def test_bad_manifest_is_refused(bundle_dir, key, value, problem):
    path = bundle_dir / "manifest.json"
    data = json.loads(path.read_text())
    data[key] = value
    path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match=problem):
        load_bundle(bundle_dir)


def test_missing_pieces_are_named(tmp_path, bundle_dir):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "nowhere")
    (bundle_dir / "model.tflite").unlink()
    with pytest.raises(BundleError, match="missing"):
        load_bundle(bundle_dir)


def test_output_size_must_match_labels(bundle_dir):
    with pytest.raises(BundleError, match="3 classes"):
        load_bundle(bundle_dir).check_output_size(3)


def test_importing_edge_pulls_in_no_tensorflow():
    code = ("import sys, edge, edge.bundle, edge.errors; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'keras_hub')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bundle_folder_is_readable_by_other_users(bundle_dir):
    assert bundle_dir.stat().st_mode & 0o755 == 0o755
