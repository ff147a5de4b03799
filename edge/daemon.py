"""The composition root: builds every part from the config and runs the sorting loop.

    camera -> trigger -> classifier (K frames) -> decider -> flap -> store (+ outbox) -> MQTT / web

Everything is built once in ``start``; the loop does no per-frame setup. Remote commands
arrive on MQTT's thread and are queued to the loop, so they never race the flap. The
flap goes to neutral on start, after each item, on stop and on any fatal error.

Usage:
    daemon = Daemon(load_config("firmware_config/smartbin.yaml"), max_items=10)
    daemon.start()
    exit_code = daemon.run()   # also stops cleanly on SIGTERM when install_signal_handlers() was called
"""

from __future__ import annotations

import collections
import logging
import queue
import signal
import threading
import time
import uuid
from typing import Any

import numpy as np

from edge import parts
from edge.bundle import normal_label
from edge.camera.fake import BrokenCamera
from edge.config import Config, state_dir
from edge.config_checks import model_warnings
from edge.errors import CameraError, ClassifierError, ConfigError, FlapError, StoreError
from edge.notify import Notifier
from edge.recorder import Recorder
from edge.remote_commands import RemoteCommands
from edge.stats import Stats
from edge.store import Store

log = logging.getLogger(__name__)

RECENT_ITEMS = 10
MAX_CAMERA_BACKOFF_S = 5.0
LIVE_CAMERAS = ("auto", "picamera2", "opencv")  # reopened when they keep failing; a replay would start over
EXIT_FLUSH_S = 10.0       # replay end / --max-items: how long to wait for the broker to take the backlog
STOP_FLUSH_S = 1.0        # SIGTERM: systemd expects us gone within TimeoutStopSec; the outbox keeps the rest


class Daemon(RemoteCommands):
    """The running bin.

    Args:
        config: the validated configuration.
        max_items: stop (exit 0) after this many items; ``None`` runs until the source ends or a signal.
        notifier: sd_notify sender; default reads ``NOTIFY_SOCKET`` from the environment.

    Usage:
        daemon = Daemon(config); daemon.start(); daemon.run()
    """

    def __init__(self, config: Config, max_items: int | None = None, notifier: Notifier | None = None):
        self.config = config
        self.device_id = config.device.id
        self.max_items = max_items
        self.notifier = notifier or Notifier.from_environment()
        self.stats = Stats()
        self.items = 0
        self.truth_seen = self.truth_agreed = 0  # replay only: how often the label matched the folder
        self.started_at = time.time()
        self.source = self.trigger = self.classifier = self.decider = self.flap = None
        self.review = self.sensor = self.link = self.web = None
        self.store: Store | None = None
        self.recorder: Recorder | None = None
        self.counts: dict[str, Any] | None = None  # latest, so status pages never query the database
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_ITEMS)
        self._commands: queue.Queue = queue.Queue(maxsize=32)
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._closed = False

    # -- building ---------------------------------------------------------------------------

    def start(self) -> None:
        """Builds store, model, flap, trigger, camera, then MQTT and web; READY=1 once sorting can start.

        Raises:
            SmartbinError: a part cannot be built (the message says which and why).
        """
        config = self.config
        folder = state_dir(config)
        self.store = Store(folder / "smartbin.db")
        self.recent.extend(self.store.recent(RECENT_ITEMS))
        self.counts = self.store.counts()
        self.recorder = Recorder(self.store, on_recorded=self._on_recorded)
        self.classifier = parts.load_classifier(config)
        self._warn_about_labels()
        self.decider = parts.build_decider(config)
        review = config.decision.review
        if review.enabled:
            from edge.review import ReviewFolder
            self.review = ReviewFolder(folder / "review", max_files=review.max_files)
        self.flap = parts.build_flap(config)
        self.trigger, self.sensor = parts.build_trigger(config, pin_factory=self.flap.pin_factory)
        self.source = parts.open_camera(config, self.classifier.bundle.manifest.input)
        if config.mqtt.enabled:
            self._start_mqtt()
        if config.web.enabled:
            self._start_web(folder)
        self.notifier.ready(f"sorting with {self.classifier.bundle.name}")
        if self.notifier.watchdog_enabled:  # systemd kills a unit with WatchdogSec= that never pings
            self._watchdog = threading.Thread(target=self._watchdog_loop, name="watchdog", daemon=True)
            self._watchdog.start()
        log.info("smartbin %s sorting with %s (camera %s, detector %s)", self.device_id,
                 self.classifier.bundle.name, config.camera.type, config.detector.type)

    def _start_mqtt(self) -> None:
        self.link = parts.build_link(self.config, self.store, on_command=self._on_command,
                                     stats_provider=self.stats_payload, discovery_provider=self._discovery_messages)
        self.link.start()

    def _discovery_messages(self) -> list:
        # Built when (re)published, so a reloaded model's labels reach Home Assistant.
        if not self.config.mqtt.home_assistant.enabled:
            return []
        from edge.hass import discovery_messages, recorded_keys

        settings = self.config.mqtt
        return discovery_messages(self.device_id, settings.topic_root(self.device_id),
                                  recorded_keys(self.store, "labels", self.classifier.labels),
                                  recorded_keys(self.store, "bins", self.decider.bin_names),
                                  settings.home_assistant.discovery_prefix, self.classifier.bundle.name)

    def _start_web(self, folder) -> None:
        self.web = parts.build_web(self.config, self.classifier, self.decider, status_provider=self.status,
                                   state_dir=folder)
        try:
            self.web.start()
        except OSError as err:  # a port another program holds: a restart every 10 s cannot free it
            raise ConfigError([("web.port", err.strerror or str(err))]) from None

    def _warn_about_unsorted_photos(self) -> None:
        # A replay knows how many photos it laid on the tray: one the detector never took for an item
        # (settings too strict for it, a photo too like the tray) must not vanish without a word.
        shown = self.source.stats.get("photos", 0)
        if shown > self.items:
            log.warning("replay: %d of %d photos were not sorted: the item detector never saw them as items "
                        "(check detector.diff_threshold and occupied_fraction)", shown - self.items, shown)

    def _warn_about_labels(self) -> list[str]:
        warnings = [f"{key}: {warning}" for key, warning in model_warnings(self.config, self.classifier.bundle)]
        for warning in warnings:
            log.warning("%s", warning)
        return warnings

    # -- running ----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM, SIGINT and SIGHUP (a closed terminal) stop the loop; ``run`` then parks the flap and exits 0."""
        def handle(number, _frame):
            # The handler interrupts the loop anywhere, maybe while it holds a lock stop() needs (an
            # Event's, a camera's): stopping from another thread cannot deadlock on it.
            threading.Thread(target=self.stop, args=(f"signal {signal.Signals(number).name}",),
                             name="stop", daemon=True).start()

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, handle)

    def stop(self, reason: str = "stop requested") -> None:
        """Asks the loop to end (thread- and signal-safe); a blocked camera read is woken."""
        if not self._stop.is_set():
            log.info("stopping: %s", reason)
            self._stop.set()
            if self.link is not None:  # a connection made while the flap parks must not say "online"
                self.link.begin_shutdown()
            if self.source is not None:
                self.source.close()

    def run(self) -> int:
        """Sorts until the source ends, ``max_items`` is reached or ``stop``; returns the exit code."""
        code = 0
        try:
            self._loop()
        except StoreError as err:  # a full disk, a failing card: its message says all, a traceback would bury it
            log.error("fatal: the state database failed, so the bin stops (flap parked): %s", err)
            code = 1
        except Exception:  # noqa: BLE001 -- the flap must park whatever went wrong; systemd restarts us
            log.exception("fatal error in the sorting loop")
            code = 1
        finally:
            self.close(flush_s=STOP_FLUSH_S if self._stop.is_set() or code else EXIT_FLUSH_S, fatal=bool(code))
        return code

    def _loop(self) -> None:
        backoff = 0.2
        timeout = self.config.camera.read_timeout_s
        while not self._stop.is_set():
            self._run_commands()
            try:
                frame = self.source.read(timeout=timeout)
            except CameraError as err:
                self.stats.camera_error()
                # No frame, no watchdog ping: if the camera stays hung, systemd restarts the service.
                log.warning("camera: %s (retrying in %.1f s)", err, backoff)
                if self._stop.wait(backoff):
                    continue  # stopping: no reopen, which could take seconds systemd does not give us
                if backoff >= MAX_CAMERA_BACKOFF_S and getattr(self.source, "_is_file", False):
                    raise err  # a video file that keeps failing: reopened, it would play again from the start
                if backoff >= MAX_CAMERA_BACKOFF_S and self.config.camera.type in LIVE_CAMERAS:
                    self._reopen_camera()
                backoff = min(backoff * 2, MAX_CAMERA_BACKOFF_S)
                continue
            backoff = 0.2
            if frame is None:
                if not self._stop.is_set():
                    log.info("camera source ended after %d items", self.items)
                    self._warn_about_unsorted_photos()
                    if self.truth_seen:
                        log.info("replay: label equals the photo's folder for %d of %d items (%.1f%%)",
                                 self.truth_agreed, self.truth_seen, 100 * self.truth_agreed / self.truth_seen)
                return
            if not _is_rgb(frame.image):
                self.stats.unreadable()
                continue
            self.stats.frame()
            settled = self.trigger.update(frame)
            if settled:
                self._sort(settled)
                if self.max_items is not None and self.items >= self.max_items:
                    log.info("sorted %d items (--max-items)", self.items)
                    return

    def _reopen_camera(self) -> None:
        """A live camera that keeps failing (a USB camera unplugged and plugged back in) is opened
        afresh, the old one closed first (a Pi camera can be open only once)."""
        old = self.source
        old.close()
        # Its dropped and unreadable frames move into the totals (stats_payload adds the current source's),
        # with a stand-in holding none meanwhile, so no figure counts them twice while the new one opens.
        self.source = BrokenCamera(CameraError("the camera is being reopened"))
        self.stats.dropped(old.stats.get("dropped", 0))
        self.stats.unreadable(old.stats.get("unreadable", 0))
        try:
            source = parts.open_camera(self.config, self.classifier.bundle.manifest.input)
        except CameraError as err:
            self.source = BrokenCamera(err)  # the next read fails, and after the back-off we try again
            return
        self.source = source
        if self._stop.is_set():  # stop() closed the old one while this one was opening
            source.close()
            return
        log.info("camera: reopened")

    def _watchdog_loop(self) -> None:
        """Pings systemd while frames flow; a camera (or loop) stuck for max_frame_gap_s stops the pings.

        With ``watchdog.enabled: false`` the pings go on regardless of frames: the unit's
        ``WatchdogSec=`` then only catches a hung process, instead of restarting it every 30 s.
        """
        check_frames = self.config.watchdog.enabled
        gap_limit = self.config.watchdog.max_frame_gap_s
        period = min(self.notifier.watchdog_interval_s / 2, 1.0)
        while not self._stop.wait(period):
            age = self.stats.seconds_since_frame()
            if age is None:
                age = self.stats.uptime_s  # no frame yet: the camera gets max_frame_gap_s to deliver one
            self.notifier.watchdog(frames_flowing=not check_frames or age < gap_limit)

    def _sort(self, settled: list) -> None:
        try:
            # A source that made the classifier's input off the loop saves the loop a resize per frame;
            # not after reload_model to a model of another size, until the camera is reopened.
            spec = self.classifier.bundle.manifest.input
            prediction = self.classifier.classify_frames(
                [frame.model_input if frame.model_input is not None and frame.model_input.shape[:2] == (
                    spec.height, spec.width) else frame.image for frame in settled])
        except (ClassifierError, ValueError) as err:
            log.warning("cannot classify item: %s", err)
            self.stats.unreadable(len(settled))
            return
        decision = self.decider.decide(prediction)
        last = settled[-1]
        item_id = uuid.uuid4().hex  # made once and stored: every re-send of this event carries it
        event = {
            "id": item_id, "device_id": self.device_id, "ts": round(last.ts, 3),
            "label": decision.label, "confidence": round(decision.confidence, 4), "bin": decision.bin,
            "rejected": decision.rejected,
            "top3": [[label, round(p, 4)] for label, p in prediction.top3],
            "latency_ms": {"classify": round(prediction.latency_ms, 2), "invoke": round(prediction.invoke_ms, 2)},
            "frames": len(settled),
            "model": {"name": self.classifier.bundle.name, "sha256": self.classifier.bundle.manifest.sha256},
        }
        # A model trained with a label map answers with merged labels ("bottle" folder -> "plastic").
        truth = None if last.truth is None else self.classifier.bundle.manifest.label_of_folder(last.truth)
        if truth is not None:
            event["truth"] = truth
        if last.source_id is not None:
            event["source"] = last.source_id
        # The previous item's fsync ends first, so a power cut can take at most the last item.
        self.recorder.wait()
        # "decision" latency ends as the item is committed and the flap commanded (the commit without
        # fsync takes under a millisecond; it is the last thing before the command).
        event["latency_ms"]["decision"] = round((time.time() - last.ts) * 1000, 2)
        # Counted BEFORE the flap moves: a kill -9 from here on finds the item counted, and a failed
        # write (disk full) stops the bin with the item still on the tray instead of sorting it uncounted.
        self.recorder.record(event, topic="item" if self.link is not None else None)
        try:
            self.flap.move_to(decision.bin, wait=False)
        except FlapError as err:
            log.error("flap: %s", err)
            self.stats.flap_error()
            event["flap_error"] = str(err)
            self.store.amend_item(item_id, flap_error=event["flap_error"])
        self.items += 1
        truth_note = ""
        if truth is not None:
            self.truth_seen += 1
            self.truth_agreed += int(truth == normal_label(decision.label))
            truth_note = f" (truth {truth})"
        log.info("item %d: %s %.0f%% -> bin %s%s", self.items, decision.label, 100 * decision.confidence,
                 decision.bin, truth_note)
        self.stats.item(prediction.latency_ms, event["latency_ms"]["decision"])
        self.recent.appendleft({**event, "_image": last.image})
        if decision.rejected and self.review is not None:
            self.review.save_later(last.image, item_id, decision.label, decision.confidence)
        self._park()

    def _on_recorded(self, counts: dict[str, Any]) -> None:
        self.counts = counts
        if self.link is not None:
            self.link.wake(counts_changed=True)

    def _park(self) -> None:
        try:
            self.flap.neutral()
        except FlapError as err:
            log.error("flap cannot return to neutral: %s", err)
            self.stats.flap_error()

    # -- reporting --------------------------------------------------------------------------

    def stats_payload(self) -> dict[str, Any]:
        source_stats = self.source.stats if self.source is not None else {}
        data = self.stats.snapshot(outbox=self.link.unacknowledged() if self.link else 0)
        data["dropped_frames"] += source_stats.get("dropped", 0)
        data["unreadable_frames"] += source_stats.get("unreadable", 0)
        # Events the full outbox had to drop during a very long outage: rare, but never silent.
        data["outbox_dropped"] = self.store.outbox_dropped if self.store is not None else 0
        # A tray relearnt after staying changed: a light change, a bumped camera or a stuck item to check.
        data["tray_relearned"] = getattr(self.trigger, "relearned", 0)
        return data

    def status(self, recent: bool = True) -> dict[str, Any]:
        """Everything the status page shows (see docs/mqtt.md for the fields); with ``recent=False``
        (``/metrics``) no recent items, whose thumbnails would be encoded on this first look."""
        from edge.web import payloads

        settings = self.config.mqtt
        return {
            "device_id": self.device_id,
            "started_at": self.started_at,
            "uptime_s": round(time.time() - self.started_at, 1),
            "model": payloads.model_block(self.classifier) if self.classifier else None,
            "counts": self.counts,
            "recent": [payloads.recent_entry(entry) for entry in list(self.recent)] if recent else [],
            "stats": self.stats_payload(),
            "mqtt": {"enabled": settings.enabled, "connected": bool(self.link and self.link.connected),
                     "broker": settings.address},
        }

    # -- stopping ---------------------------------------------------------------------------

    def close(self, flush_s: float = STOP_FLUSH_S, fatal: bool = False) -> None:
        """Parks and detaches the flap, says STOPPING, flushes and publishes ``stopped`` (``offline`` when
        ``fatal``: systemd will restart us, dashboards should not read it as a stop on purpose); safe twice."""
        if self._closed:
            return
        self._closed = True
        # Also when the source simply ended: no watchdog ping may follow STOPPING=1.
        self._stop.set()
        self._refuse_waiting_commands()
        if self._watchdog is not None:
            self._watchdog.join(timeout=2.0)
        self.notifier.stopping()
        if self.sensor is not None:
            try:
                self.sensor.close()  # before the flap closes the pin factory they share
            except Exception as err:  # noqa: BLE001 -- whatever the sensor does, the flap must still park
                log.error("sensor: %s", err)
        if self.flap is not None:
            try:
                self.flap.close()  # neutral, detached, pin released
                log.info("flap parked at neutral (%g degrees) and detached", self.config.flap.neutral_angle)
            except Exception as err:  # noqa: BLE001 -- a GPIO fault must not cost the `stopped` and the flush
                log.error("flap: %s", err)
        if self.source is not None:
            self.source.close()
        if self.recorder is not None:
            try:
                self.recorder.close()
            except Exception as err:  # noqa: BLE001 -- already fatal in the loop; close the rest anyway
                log.error("recording the last item failed: %s", err)
        if self.review is not None:
            self.review.close()
        if self.web is not None:
            self.web.stop()
        if self.link is not None:
            try:
                self._stop_link(fatal, flush_s)
            except Exception as err:  # noqa: BLE001 -- the store and the notifier must still close
                log.error("MQTT: %s", err)
        if self.store is not None:
            self.store.close()
        self.notifier.close()

    def _stop_link(self, fatal: bool, flush_s: float) -> None:
        self.link.begin_shutdown("offline" if fatal else "stopped")
        if not self.link.connected and self.store.outbox_size():
            self.link.wait_connected(min(2.0, flush_s))
        if not self.link.flush(flush_s):
            log.warning("%d events stay in the outbox for the next start", self.store.outbox_size())
        self.link.stop(timeout=1.0, availability="offline" if fatal else "stopped")


def _is_rgb(image: Any) -> bool:
    return (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0)
