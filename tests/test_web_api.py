"""The web page's HTTP API: a photo in, a verdict out, and what is kept of it on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.classifier import Classifier
from edge.decision import Decider
from edge.web.server import WebServer
from tests.conftest import REPO_ROOT, TINY_LABELS, make_photo
from tests.web_support import BINS, classify, jpeg_bytes, png_bytes, serve, serving, upload

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(classifier, tmp_path):
    with serving(classifier, tmp_path / "state", max_upload_bytes=200_000) as web:
        yield web


SHIPPED_MODEL = REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8"


# ---- a photo in, a verdict out ---------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(TINY_LABELS)))
def test_a_photo_gets_its_class_bin_probabilities_and_latency(server, index):
    status, _, result = upload(server, jpeg_bytes(make_photo(index, size=(384, 512), seed=7)))

    assert status == 200
    assert result["label"] == TINY_LABELS[index]
    assert result["bin"] == BINS[TINY_LABELS[index]] and result["rejected"] is False
    assert set(result["probabilities"]) == set(TINY_LABELS)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=0.02)
    assert result["confidence"] == max(result["probabilities"].values())
    assert [entry["label"] for entry in result["top3"]][0] == result["label"]
    assert result["latency_ms"] > 0 and result["server_ms"] >= result["latency_ms"]
    assert result["min_confidence"] == 0.6


def test_png_and_a_raw_image_body_are_accepted_too(server):
    photo = make_photo(1, size=(60, 80))
    assert upload(server, png_bytes(photo), "photo.png", "image/png")[2]["label"] == "glass"
    status, _, result = classify(server, jpeg_bytes(photo), "image/jpeg")
    assert status == 200 and result["label"] == "glass"


def test_an_unsure_photo_goes_to_the_reject_bin(classifier, tmp_path):
    web = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 1.0), state_dir=tmp_path)
    web.start()
    try:
        status, _, result = upload(web, jpeg_bytes(make_photo(2, size=(64, 64))))
    finally:
        web.stop()
    assert status == 200 and result["rejected"] is True and result["bin"] == "rest"
    assert result["label"] == "metal"


def test_the_shipped_default_model_classifies_a_trashnet_like_photo(tmp_path):
    if not (SHIPPED_MODEL / "manifest.json").is_file():
        pytest.skip(f"{SHIPPED_MODEL.relative_to(REPO_ROOT)} is not there yet")
    shipped = Classifier.from_path(SHIPPED_MODEL, threads=2)
    web = WebServer(port=0, classifier=shipped, decider=Decider({}, "rest", 0.6), state_dir=tmp_path)
    web.start()
    try:
        status, _, result = upload(web, jpeg_bytes(make_photo(1, size=(384, 512))))
    finally:
        web.stop()
    assert status == 200
    assert result["label"] in shipped.labels
    assert set(result["probabilities"]) == set(shipped.labels)


# ---- what is kept on disk --------------------------------------------------------------------

def test_uploads_are_not_written_anywhere_by_default(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert upload(server, jpeg_bytes(make_photo(0)))[0] == 200
    assert sorted(tmp_path.rglob("*")) == before


def test_kept_uploads_go_under_state_dir_uploads_with_names_of_our_own(classifier, tmp_path):
    state = tmp_path / "state"
    web = serve(classifier, state, keep_uploads=True)
    try:
        status, _, result = upload(web, jpeg_bytes(make_photo(2)), filename="../../escape.jpg")
    finally:
        web.stop()
    assert status == 200
    kept = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    assert [path.parent for path in kept] == [Path("state/uploads")] * 2
    assert {path.suffix for path in kept} == {".jpeg", ".json"}
    assert not any("escape" in path.name for path in kept)


def test_only_the_newest_kept_uploads_stay(tmp_path):
    from edge.web.upload import Photo, keep_upload

    for i in range(4):
        keep_upload(tmp_path / "uploads", Photo(b"\xff\xd8\xff" + bytes([i]), "jpeg"), {"n": i}, max_files=2,
                    max_bytes=1 << 20)
    kept = sorted((tmp_path / "uploads").glob("*.json"))
    assert [json.loads(path.read_text())["n"] for path in kept] == [2, 3]
    assert len(list((tmp_path / "uploads").glob("*.jpeg"))) == 2


def test_uploads_kept_at_the_same_time_by_several_visitors_prune_without_false_alarms(tmp_path, caplog):
    import logging
    import threading

    from edge.web.upload import Photo, keep_upload

    def visitor(n):
        for i in range(25):
            keep_upload(tmp_path / "uploads", Photo(b"\xff\xd8\xff" + bytes(2_000), "jpeg"), {"n": n * 100 + i},
                        max_files=5, max_bytes=1 << 20)

    with caplog.at_level(logging.WARNING, logger="edge.web"):
        visitors = [threading.Thread(target=visitor, args=(n,)) for n in range(6)]
        for thread in visitors:
            thread.start()
        for thread in visitors:
            thread.join()
    assert not caplog.records  # no "could not keep the upload", no pruning skipped
    assert len(list((tmp_path / "uploads").glob("*.json"))) == 5
    assert len(list((tmp_path / "uploads").glob("*.jpeg"))) == 5


def test_kept_uploads_stay_under_their_byte_budget_however_few_they_are(tmp_path):
    from edge.web.upload import Photo, keep_upload

    for i in range(5):  # 40 kB each (a padded 1-pixel PNG is as big as the upload limit allows)
        keep_upload(tmp_path / "uploads", Photo(b"\x89PNG" + bytes(40_000), "png"), {"n": i}, max_files=500,
                    max_bytes=100_000)
    kept = sorted((tmp_path / "uploads").glob("*.json"))
    assert [json.loads(path.read_text())["n"] for path in kept] == [3, 4]
    assert sum(path.stat().st_size for path in (tmp_path / "uploads").iterdir()) <= 100_000


def test_keeping_uploads_without_a_state_dir_is_a_config_error(classifier):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="web.keep_uploads"):
        WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6), keep_uploads=True)
