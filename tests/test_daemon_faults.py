"""The daemon in-process when a part fails: camera, model, photos, store, flap, sensor, broker; nothing lost."""

from __future__ import annotations

import threading

import pytest

from edge.daemon import Daemon
from edge.errors import BundleError
from edge.store import Store, read_counts
from tests.daemon_support import ROOT, daemon_config, drain, photo_count, run_in_thread, started_with_a_fault
from tests.mqtt_helpers import Listener, retained

pytestmark = pytest.mark.timeout(90)


def run_with_a_camera_that_hangs_after_5_frames(tmp_path, tiny_bundle, until) -> Daemon:
    """Runs the daemon on a fake camera that stops delivering after 5 frames, until ``until(daemon)``."""
    config = daemon_config(tmp_path, tiny_bundle, camera={"fake": {"frames": 50, "block_after": 5},
                                                          "read_timeout_s": 0.1, "fps": 100})
    daemon = Daemon(config)
    daemon.start()
    thread = run_in_thread(daemon)
    deadline = threading.Event()
    while not until(daemon) and not deadline.wait(0.05):
        pass
    daemon.stop()
    thread.join(5)
    assert not thread.is_alive()
    return daemon


def test_a_hung_camera_is_retried_without_crashing(tmp_path, tiny_bundle):
    daemon = run_with_a_camera_that_hangs_after_5_frames(tmp_path, tiny_bundle,
                                                         until=lambda daemon: daemon.stats.camera_errors >= 2)
    assert daemon.stats.frames == 5 and daemon.stats.camera_errors >= 2


def test_a_live_camera_that_keeps_failing_is_reopened(tmp_path, tiny_bundle, monkeypatch, caplog):
    # A USB camera unplugged and plugged back in: reading again never recovers it, opening it again does.
    import edge.daemon as daemon_module

    monkeypatch.setattr(daemon_module, "LIVE_CAMERAS", ("fake",))  # the fake camera stands in for a live one
    monkeypatch.setattr(daemon_module, "MAX_CAMERA_BACKOFF_S", 0.2)
    caplog.set_level("INFO", logger="edge.daemon")
    # 5 frames from the first camera, 5 more from the reopened one.
    daemon = run_with_a_camera_that_hangs_after_5_frames(tmp_path, tiny_bundle,
                                                         until=lambda daemon: daemon.stats.frames >= 10)
    assert daemon.stats.frames >= 10 and "camera: reopened" in caplog.text


def test_a_video_file_that_keeps_failing_ends_the_run_instead_of_replaying_from_the_start(
        tmp_path, tiny_bundle, monkeypatch):
    import edge.daemon as daemon_module

    monkeypatch.setattr(daemon_module, "MAX_CAMERA_BACKOFF_S", 0.2)
    config = daemon_config(tmp_path, tiny_bundle, camera={"fake": {"frames": 50, "block_after": 5},
                                                          "read_timeout_s": 0.1, "fps": 100})
    daemon = Daemon(config)
    daemon.start()
    daemon.source._is_file = True  # as OpenCVSource sets it for a recording
    assert daemon.run() == 1 and daemon.stats.frames == 5


def test_a_reopen_keeps_the_old_cameras_dropped_frames_and_a_stop_meanwhile_closes_the_new_one(
        tmp_path, tiny_bundle, monkeypatch):
    import edge.daemon as daemon_module

    daemon = Daemon(daemon_config(tmp_path, tiny_bundle))
    daemon.start()
    try:
        daemon.source._stats = {**daemon.source.stats, "dropped": 40, "unreadable": 3}
        real_open = daemon_module.parts.open_camera

        def open_while_a_sigterm_arrives(config, model_spec=None):
            daemon.stop()
            return real_open(config, model_spec)

        monkeypatch.setattr(daemon_module.parts, "open_camera", open_while_a_sigterm_arrives)
        daemon._reopen_camera()
        payload = daemon.stats_payload()
        assert payload["dropped_frames"] == 40 and payload["unreadable_frames"] == 3
        assert daemon.source.read() is None  # the new camera was closed at once: the loop ends
    finally:
        daemon.close()


def test_a_missing_model_is_one_clear_error(tmp_path, tiny_bundle, photo_folder):
    daemon = Daemon(daemon_config(tmp_path, tmp_path / "no-such-bundle", photo_folder))
    with pytest.raises(BundleError, match="no-such-bundle"):
        daemon.start()
    daemon.close()


def test_an_unreadable_photo_is_skipped_and_counted(tmp_path, tiny_bundle, photo_folder):
    (photo_folder / "glass" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder))
    daemon.start()
    assert daemon.run() == 0
    assert daemon.items == photo_count(photo_folder) - 1
    assert daemon.stats_payload()["unreadable_frames"] == 1


def test_the_item_is_committed_before_the_flap_moves_so_a_kill_9_cannot_lose_it(tmp_path, tiny_bundle, photo_folder):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder, flap={"settle_s": 0.3}), max_items=1)
    daemon.start()
    seen_by_another_process = []
    move = daemon.flap.move_to

    def move_to(bin_name, **options):
        # What a restarted bin would read if this process were killed now, as the servo starts.
        counts = read_counts(daemon.store.path)
        seen_by_another_process.append((counts["total"], counts["bins"]))
        move(bin_name, **options)

    daemon.flap.move_to = move_to
    assert daemon.run() == 0
    (total, bins), = seen_by_another_process
    assert total == 1 and bins == {daemon.recent[0]["bin"]: 1}
    assert daemon.flap.history[-2:] == [0.0, None]


def test_a_failed_commit_stops_the_bin_before_the_flap_moves_and_says_why_in_one_line(tmp_path, tiny_bundle,
                                                                                       photo_folder, caplog):
    from edge.errors import StoreError

    daemon = started_with_a_fault(tmp_path, tiny_bundle, photo_folder, "store", "record_item",
                                  StoreError("smartbin.db: cannot record an item: database or disk is full"))
    assert daemon.run() == 1
    assert set(daemon.flap.history) <= {0.0, None}  # never left neutral: the item stays on the tray
    fatal, = [r for r in caplog.records if r.levelname == "ERROR" and "fatal" in r.getMessage()]
    assert fatal.getMessage().endswith("the bin stops (flap parked): smartbin.db: cannot record an item: "
                                       "database or disk is full")
    assert fatal.exc_info is None  # the message says it all; a traceback would bury it


def test_a_flap_that_fails_to_move_is_written_into_the_items_event(tmp_path, tiny_bundle, photo_folder):
    from edge.errors import FlapError

    daemon = started_with_a_fault(tmp_path, tiny_bundle, photo_folder, "flap", "move_to", FlapError("GPIO17 is busy"))
    assert daemon.run() == 0
    stored = Store(daemon.store.path).recent(1)[0]
    assert stored["flap_error"] == "GPIO17 is busy" and daemon.recent[0]["flap_error"] == "GPIO17 is busy"
    assert daemon.stats_payload()["flap_errors"] == 1  # dashboards see a flap that no longer sorts


def test_a_flap_command_that_cannot_move_the_flap_counts_as_a_flap_error_but_a_typo_does_not(tmp_path, tiny_bundle):
    from edge import commands as cmd
    from edge.errors import FlapError

    daemon = Daemon(daemon_config(tmp_path, tiny_bundle))
    daemon.start()

    def stuck(*args, **kwargs):
        raise FlapError("GPIO17 is busy")

    try:
        typo = cmd.dispatch(cmd.parse_command("flap", b'{"bin": "attic"}'), {"flap": daemon._flap_command})
        daemon.flap.move_to = stuck
        fault = cmd.dispatch(cmd.parse_command("flap", b'{"bin": "glass"}'), {"flap": daemon._flap_command})
    finally:
        daemon.close()
    assert not typo["ok"] and "unknown bin 'attic'" in typo["error"]
    assert fault == {"command": "flap", "ok": False, "error": "GPIO17 is busy"}
    assert daemon.stats_payload()["flap_errors"] == 1


def test_a_fatal_error_parks_the_flap_and_says_offline_not_stopped(tmp_path, tiny_bundle, photo_folder, mosquitto):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder, mosquitto))
    with Listener(mosquitto.port, f"{ROOT}/availability") as listener:
        daemon.start()

        def broken_update(frame):
            raise RuntimeError("detector bug")

        daemon.trigger.update = broken_update
        assert daemon.run() == 1
        listener.wait_for(lambda: "offline" in listener.texts(f"{ROOT}/availability"), what="offline")
    # The error can come before the connection is up: then "online" is never said, and the
    # connection made while stopping says "offline" at once.
    said = listener.texts(f"{ROOT}/availability")
    assert said[-1] == "offline" and "stopped" not in said
    assert retained(mosquitto.port, f"{ROOT}/availability").text == "offline"
    assert daemon.flap.history[-2:] == [0.0, None]


def test_a_beam_sensor_shares_the_flaps_pin_factory_and_closes_cleanly(tmp_path, tiny_bundle, photo_folder):
    config = daemon_config(tmp_path, tiny_bundle, photo_folder, detector={"type": "sensor", "sensor_pin": 17})
    daemon = Daemon(config)
    daemon.start()
    try:
        assert daemon.sensor._device.pin_factory is daemon.flap.pin_factory  # one GPIO chip handle
        daemon.sensor.simulate(True)
        assert daemon.sensor.is_active()
    finally:
        daemon.close()
    assert daemon.flap._servo.closed and daemon.sensor._device.closed


def test_a_sensor_config_can_be_dry_run_with_the_mock_gpio_and_a_replay(tmp_path, tiny_bundle, photo_folder):
    # The mock beam breaks while each replayed photo lies on the tray: one item per photo, as with the camera.
    config = daemon_config(tmp_path, tiny_bundle, photo_folder, detector={"type": "sensor", "sensor_pin": 17})
    daemon = Daemon(config)
    daemon.start()
    assert daemon.run() == 0
    assert daemon.items == photo_count(photo_folder)
    assert daemon.trigger.trigger.items == photo_count(photo_folder)  # the beam broke once per photo


def test_a_failing_sensor_close_still_parks_the_flap(tmp_path, tiny_bundle, photo_folder):
    config = daemon_config(tmp_path, tiny_bundle, photo_folder, detector={"type": "sensor", "sensor_pin": 17})
    daemon = Daemon(config)
    daemon.start()
    real_close = daemon.sensor.close

    def broken_close():
        real_close()
        raise RuntimeError("lgpio: cannot free pin 17")

    daemon.sensor.close = broken_close
    daemon.close()
    assert daemon.flap._servo.closed


def test_a_failing_mqtt_stop_still_closes_the_store(tmp_path, tiny_bundle, photo_folder):
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder))
    daemon.start()
    closed = []
    real_close = daemon.store.close
    daemon.store.close = lambda: closed.append(real_close())

    class BrokenLink:
        def begin_shutdown(self, availability):
            raise RuntimeError("disk full while flushing the outbox")

    daemon.link = BrokenLink()
    daemon.close()  # logs the error instead of raising it past the store and the notifier
    assert closed == [None]


def test_with_the_watchdog_off_the_pings_go_on_without_frames(tmp_path, tiny_bundle):
    """WatchdogSec= in the unit still expects pings: `watchdog.enabled: false` must not mean a restart loop."""
    import socket
    import threading
    import time

    from edge.notify import Notifier

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(0.05)
        notifier = Notifier(str(tmp_path / "notify"), watchdog_usec=100_000)
        config = daemon_config(tmp_path, tiny_bundle)
        config.camera.type = "fake"
        config.camera.fake.block_after = 0  # a camera that never delivers a frame
        config.watchdog.enabled = False
        config.watchdog.max_frame_gap_s = 0.1
        daemon = Daemon(config, notifier=notifier)
        daemon.start()
        runner = threading.Thread(target=daemon.run)
        runner.start()
        time.sleep(0.6)
        messages = drain(systemd)
        daemon.stop()
        runner.join(10)
    assert messages.count("WATCHDOG=1") >= 3


def test_a_failed_commit_stops_the_loop_even_when_a_command_comes_first(tmp_path, tiny_bundle):
    from concurrent.futures import Future

    from edge import commands
    from edge.errors import StoreError

    daemon = Daemon(daemon_config(tmp_path, tiny_bundle))
    daemon.start()
    try:
        failed = Future()
        failed.set_exception(StoreError("disk full"))
        daemon.recorder._pending = failed  # the last item's commit failed on the recorder thread
        daemon._commands.put_nowait(commands.parse_command("reset_counts", b"{}"))
        with pytest.raises(StoreError, match="disk full"):  # not an error reply to the command
            daemon._run_commands()
    finally:
        daemon.close()
