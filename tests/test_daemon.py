"""The daemon in-process: replay end to end over real MQTT, the servo's moves, commands, status, rejects.

What it does when a part fails is in ``test_daemon_faults.py``.
"""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from edge.daemon import Daemon
from tests.daemon_support import ANGLES, ROOT, daemon_config, drain, photo_count, run_in_thread
from tests.mqtt_helpers import Listener, retained

pytestmark = pytest.mark.timeout(90)


def test_replay_end_to_end_sorts_each_photo_once_and_publishes_everything(tmp_path, tiny_bundle, photo_folder,
                                                                          mosquitto):
    config = daemon_config(tmp_path, tiny_bundle, photo_folder, mosquitto)
    daemon = Daemon(config)
    with Listener(mosquitto.port, f"{ROOT}/#", "homeassistant/#") as listener:
        daemon.start()
        assert daemon.run() == 0
        listener.wait_for(lambda: "stopped" in listener.texts(f"{ROOT}/availability"), what="stopped")
    events = listener.payloads(f"{ROOT}/item")
    discovery = {m.topic for m in listener.messages if m.topic.startswith("homeassistant/")}
    for key in ("label_cardboard", "label_glass", "label_metal", "bin_paper", "bin_rest", "total"):
        assert f"homeassistant/sensor/bin_d/{key}/config" in discovery
    photos = photo_count(photo_folder)
    assert len(events) == photos == len({e["id"] for e in events})
    assert sorted(e["source"] for e in events) == sorted(
        p.relative_to(photo_folder).as_posix() for p in photo_folder.rglob("*.jpg"))
    assert listener.texts(f"{ROOT}/availability") == ["online", "stopped"]
    counts = retained(mosquitto.port, f"{ROOT}/counts").json()
    assert counts["total"] == photos and sum(counts["bins"].values()) == photos
    for event in events:
        assert event["label"] == event["truth"]  # the tiny model knows its colours
        assert set(event["latency_ms"]) >= {"classify", "decision"}
        assert event["model"]["sha256"] == daemon.classifier.bundle.manifest.sha256
    # The servo visited each item's bin angle, in order, and went back to neutral after every one.
    history = daemon.flap.history
    moves = [angle for angle in history if angle not in (0.0, None)]
    assert moves == [ANGLES[e["bin"]] for e in events]
    for index, angle in enumerate(history):
        if angle not in (0.0, None):
            assert history[index + 1] == 0.0
    assert history[-2:] == [0.0, None]  # parked and detached at the end


def test_the_classifier_gets_the_frames_the_replay_resized_to_its_input_off_the_loop(tmp_path, tiny_bundle,
                                                                                   photo_folder, monkeypatch):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=3)
    daemon.start()
    shown = []
    classify_frames = daemon.classifier.classify_frames
    monkeypatch.setattr(daemon.classifier, "classify_frames", lambda images: shown.append(images) or classify_frames(images))
    assert daemon.run() == 0
    spec = daemon.classifier.bundle.manifest.input
    assert len(shown) == 3
    assert all(image.shape == (spec.height, spec.width, 3) for images in shown for image in images)


def test_replay_scores_a_label_mapped_model_against_the_merged_label(tmp_path, tiny_bundle, photo_folder):
    # Trained with "tin" photos merged into "metal": the replayed tin/ folder's truth is "metal".
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    (bundle / "manifest.json").write_text(json.dumps(manifest | {"label_map": {"tin": "metal"}}))
    (photo_folder / "metal").rename(photo_folder / "tin")
    daemon = Daemon(daemon_config(tmp_path, bundle, photo_folder))
    daemon.start()
    assert daemon.run() == 0
    tins = [event for event in daemon.recent if event["source"].startswith("tin/")]
    assert tins and all(event["truth"] == "metal" == event["label"] for event in tins)
    assert daemon.truth_agreed == daemon.truth_seen == photo_count(photo_folder)


def test_replayed_photos_the_detector_never_took_for_items_are_named_at_the_end(tmp_path, tiny_bundle,
                                                                                 photo_folder, caplog):
    # A threshold no photo reaches: every photo lies on the tray and leaves unsorted.
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder, detector={"occupied_fraction": 1.0,
                                                                                 "diff_threshold": 254}))
    daemon.start()
    assert daemon.run() == 0 and daemon.items == 0
    shown = photo_count(photo_folder)
    assert f"replay: {shown} of {shown} photos were not sorted: the item detector never saw them as items" in \
        caplog.text


def test_reloading_a_model_whose_labels_have_no_bin_says_so_in_the_reply(tmp_path, tiny_bundle):
    from edge import commands as cmd

    config = daemon_config(tmp_path, tiny_bundle)
    config.decision.bins = {"cardboard": "paper", "glass": "glass"}  # metal left out
    daemon = Daemon(config)
    daemon.start()
    try:
        reply = daemon._reload_model(cmd.parse_command("reload_model", json.dumps({"path": str(tiny_bundle)})))
    finally:
        daemon.close()
    assert reply["warnings"] == ["decision.bins: labels without a bin go to 'rest': metal"]


def test_a_command_that_arrives_while_the_bin_stops_is_answered_not_dropped(tmp_path, tiny_bundle, monkeypatch):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle))
    daemon.start()
    replies = []
    monkeypatch.setattr(daemon, "_reply", replies.append)
    daemon.stop("test")  # the loop that runs commands is gone; the MQTT link may still deliver one
    daemon._on_command("reset_counts", b'{"request_id": "late"}')
    daemon.close()
    assert replies == [{"command": "reset_counts", "ok": False, "error": "the bin is stopping", "request_id": "late"}]


def test_a_stop_tells_the_mqtt_link_at_once_so_a_connection_made_while_the_flap_parks_never_says_online(
        tmp_path, tiny_bundle, photo_folder, mosquitto, monkeypatch):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder, mosquitto))
    daemon.start()
    told = []
    monkeypatch.setattr(daemon.link, "begin_shutdown", lambda availability="stopped": told.append(availability))
    daemon.stop("signal SIGTERM")
    assert told == ["stopped"]  # before close() parks the flap, which takes settle_s and more
    daemon.close()


def test_commands_run_on_the_loop_and_bad_ones_get_error_replies(tmp_path, tiny_bundle, photo_folder, mosquitto):
    config = daemon_config(tmp_path, tiny_bundle, photo_folder, mosquitto)
    config.camera.replay.fps = 40
    daemon = Daemon(config)
    with Listener(mosquitto.port, f"{ROOT}/#") as listener:
        daemon.start()
        thread = run_in_thread(daemon)
        listener.wait_for(lambda: len(listener.on(f"{ROOT}/item")) >= 2, what="first items")
        for name, payload in [("flap", '{"bin": "glass", "request_id": 1}'), ("flap", '{"bin": "attic"}'),
                              ("reset_counts", "{}"), ("reload_model", '{"path": "/nowhere"}'),
                              ("reload_model", json.dumps({"path": str(tiny_bundle)})), ("dance", "{}"),
                              ("flap", "{oops"), ("flap", '{"bin": 7}'), ("flap", "x" * 10_000)]:
            listener.publish(f"{ROOT}/cmd/{name}", payload)
        listener.wait_for(lambda: len(listener.on(f"{ROOT}/cmd/result")) == 9, what="9 replies")
        before = len(listener.on(f"{ROOT}/item"))
        listener.wait_for(lambda: len(listener.on(f"{ROOT}/item")) > before, what="sorting goes on")
        daemon.stop()
        thread.join(10)
    replies = listener.payloads(f"{ROOT}/cmd/result")
    by_outcome = {(r["command"], r["ok"]) for r in replies}
    assert {("flap", True), ("reset_counts", True), ("reload_model", True), ("reload_model", False),
            ("dance", False), ("flap", False)} == by_outcome
    assert next(r for r in replies if r.get("request_id") == 1)["angle"] == ANGLES["glass"]
    assert "/nowhere" in next(r for r in replies if r["command"] == "reload_model" and not r["ok"])["error"]
    assert sum(1 for r in replies if not r["ok"]) == 6
    assert daemon.classifier.labels == ("cardboard", "glass", "metal")


def test_unsure_items_go_to_the_reject_bin_and_their_frames_to_review(tmp_path, tiny_bundle, photo_folder):
    config = daemon_config(tmp_path, tiny_bundle, photo_folder, decision={"min_confidence": 1.0})
    daemon = Daemon(config, max_items=3)
    daemon.start()
    assert daemon.run() == 0
    events = daemon.recent
    assert daemon.items == 3
    assert all(e["bin"] == "rest" and e["rejected"] for e in events)
    assert len(list((tmp_path / "state" / "review").glob("*.jpg"))) == 3


def test_status_has_the_documented_shape(tmp_path, tiny_bundle, photo_folder):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=2)
    daemon.start()
    daemon.run()
    status = daemon.status()
    assert set(status) == {"device_id", "started_at", "uptime_s", "model", "counts", "recent", "stats", "mqtt"}
    assert status["model"]["labels"] == ["cardboard", "glass", "metal"]
    assert status["counts"]["total"] == 2
    assert len(status["recent"]) == 2 and status["recent"][0]["thumbnail_jpeg_b64"]
    assert {"fps", "items", "inference_ms_mean", "inference_ms_p90", "dropped_frames", "unreadable_frames",
            "outbox", "outbox_dropped", "tray_relearned"} <= set(status["stats"])
    assert status["mqtt"] == {"enabled": False, "connected": False, "broker": "127.0.0.1:1883"}


def test_counts_survive_a_restart_and_are_not_double_counted(tmp_path, tiny_bundle, photo_folder):
    for _ in range(2):
        daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=2)
        daemon.start()
        daemon.run()
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=1)
    daemon.start()
    assert daemon.status()["counts"]["total"] == 4
    daemon.close()


def test_a_signal_arriving_while_the_loop_holds_the_cameras_lock_does_not_deadlock(tmp_path):
    import signal

    camera_lock = threading.Lock()

    class LockedCamera:
        def close(self):
            with camera_lock:
                pass

    daemon = Daemon(daemon_config(tmp_path, tmp_path / "bundle-not-needed"))
    daemon.source = LockedCamera()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        daemon.install_signal_handlers()
        with camera_lock:  # the loop is inside the camera when SIGTERM interrupts it
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        assert daemon._stop.wait(5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def test_no_watchdog_ping_follows_stopping_once_the_run_is_over(tmp_path, tiny_bundle, photo_folder):
    import socket
    import time

    from edge.notify import Notifier

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(0.05)
        notifier = Notifier(str(tmp_path / "notify"), watchdog_usec=100_000)  # a ping every 50 ms
        config = daemon_config(tmp_path, tiny_bundle, photo_folder)
        config.camera.replay.fps = 50  # a run of about 0.3 s: several pings while sorting
        daemon = Daemon(config, max_items=2, notifier=notifier)
        daemon.start()
        assert daemon.run() == 0
        time.sleep(0.3)
        messages = drain(systemd)
    assert "WATCHDOG=1" in messages and "STOPPING=1" in messages
    assert "WATCHDOG=1" not in messages[messages.index("STOPPING=1"):]




def test_a_flap_command_finds_its_bin_in_either_unicode_spelling(tmp_path, tiny_bundle):
    from edge.commands import FlapCommand

    composed, decomposed = "gl\u00e4s", "gla\u0308s"
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, decision={"reject_bin": "rest"},
                                  flap={"angles": {**ANGLES, decomposed: 30.0}}))
    daemon.start()
    try:
        assert daemon._flap_command(FlapCommand(bin=composed)) == {"bin": composed, "angle": 30.0}
        assert daemon._flap_command(FlapCommand(bin=decomposed)) == {"bin": composed, "angle": 30.0}
    finally:
        daemon.close()


def test_after_reloading_a_model_of_another_size_frames_are_resized_for_it_not_for_the_old_one(
        tmp_path, tiny_bundle, photo_folder, monkeypatch):
    from edge.commands import ReloadModel
    from tests.conftest import TINY_LABELS, TINY_SIZE
    from tests.model_factory import build_tiny_bundle

    smaller = build_tiny_bundle(tmp_path / "small-int8", TINY_LABELS, TINY_SIZE // 2)
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=2)
    daemon.start()  # the replay now makes every photo's copy at the first model's size
    daemon._reload_model(ReloadModel(path=str(smaller)))
    shown = []
    classify_frames = daemon.classifier.classify_frames
    monkeypatch.setattr(daemon.classifier, "classify_frames", lambda images: shown.append(images) or classify_frames(images))
    assert daemon.run() == 0
    # Not the first model's copies (which the new model would stretch again): the frames themselves.
    assert len(shown) == 2 and all(image.shape[:2] == (48, 64) for images in shown for image in images)
