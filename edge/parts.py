"""Builds each part of the bin from its config section: classifier, decider, flap, item trigger, camera,
MQTT link and web page.

The daemon, ``calibrate-flap`` and ``smartbin web`` all build parts from the same config; doing the
config-to-constructor translation once, here, keeps them from drifting apart and keeps the daemon
about running the bin. Each part's outside library is still imported only by its own module, and
only when that part is built.

Usage:
    from edge import parts
    classifier = parts.load_classifier(config)
    flap = parts.build_flap(config)
    trigger, sensor = parts.build_trigger(config)
    source = parts.open_camera(config)
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from edge.bundle import InputSpec
from edge.config import Config, read_mqtt_password, resolve_path
from edge.errors import FlapError, SmartbinError

log = logging.getLogger(__name__)

OCCUPANCY_KEYS = ("roi", "diff_threshold", "occupied_fraction", "still_threshold", "still_frames",
                  "classify_frames", "background_frames", "empty_frames_to_rearm", "background_rate",
                  "relearn_after_s")


def load_classifier(config: Config, path: str | None = None):
    """The LiteRT classifier for ``path`` (default: ``model.path``), validated through the bundle contract.

    Raises:
        BundleError: the bundle is missing, incomplete or does not match its model.
        ClassifierError: LiteRT cannot load the model file.
    """
    from edge.classifier import Classifier

    model_path = resolve_path(path or config.model.path, config.source_path)
    return Classifier.from_path(model_path, threads=config.model.threads, use_edgetpu=config.model.edgetpu,
                                views=config.model.views)


def build_decider(config: Config):
    """The label -> bin rules of the ``decision`` section."""
    from edge.decision import Decider

    rules = config.decision
    return Decider(rules.bins, rules.reject_bin, rules.min_confidence)


def build_flap(config: Config):
    """The servo flap, already at neutral.

    Raises:
        FlapError: the pin factory or the pin cannot be used here; off a Pi the message suggests the mock.
    """
    from edge.gpio import Flap

    flap = config.flap
    factory = flap.pin_factory or "auto"
    try:
        return Flap(pin=flap.pin, angles=flap.angles, neutral_angle=flap.neutral_angle,
                    min_angle=flap.min_angle, max_angle=flap.max_angle, min_pulse_width=flap.min_pulse_width,
                    max_pulse_width=flap.max_pulse_width, frame_width=flap.frame_width,
                    settle_s=flap.settle_s, detach_when_idle=flap.detach_when_idle, pin_factory=factory)
    except FlapError as err:
        if factory == "mock" or "--mock-gpio" in str(err):
            raise
        raise type(err)(f"{err} (off a Raspberry Pi use --mock-gpio or flap.pin_factory: mock)") from None


def build_trigger(config: Config, pin_factory: Any = None) -> tuple[Any, Any]:
    """The item trigger of ``detector.type`` and, for ``sensor``, the beam sensor it reads (else None).

    A ``sensor`` on the mock pin factory with a replay gets a beam the replayed photos break
    (``edge.detector.ReplayedBeam``), so a sensor config can be dry-run with ``--mock-gpio --replay``.

    ``pin_factory`` (the flap's, ``Flap.pin_factory``) lets the sensor share one GPIO chip handle
    with the flap; without it the sensor opens its own factory of ``flap.pin_factory``.

    Raises:
        SmartbinError: the detector options are unusable; FlapError: the sensor pin cannot be read.
    """
    from edge.detector import make_trigger

    detector = config.detector
    sensor = None
    if detector.type == "every_frame":
        options: dict[str, Any] = {}
    elif detector.type == "sensor":
        from edge.gpio import BeamSensor

        sensor = BeamSensor(pin=detector.sensor_pin, pull_up=detector.sensor_pull_up,
                            pin_factory=pin_factory if pin_factory is not None
                            else config.flap.pin_factory or "auto")
        options = {"is_active": sensor.is_active, "classify_frames": detector.classify_frames,
                   "settle_frames": detector.sensor_settle_frames, "clear_s": detector.sensor_clear_s}
    else:
        options = {key: getattr(detector, key) for key in OCCUPANCY_KEYS}
    try:
        trigger = make_trigger(detector.type, **options)
    except ValueError as err:
        if sensor is not None:
            sensor.close()
        raise SmartbinError(f"detector: {err}") from None
    if sensor is not None and sensor.is_simulated and config.camera.type == "replay":
        from edge.detector import ReplayedBeam

        log.info("sensor: the simulated beam breaks while a replayed photo lies on the tray (mock GPIO)")
        trigger = ReplayedBeam(trigger, sensor.simulate)
    return trigger, sensor


def camera_options(config: Config, model_spec: InputSpec | None = None) -> dict[str, Any]:
    """The keyword arguments of the ``camera.type`` backend, from the ``camera`` section.

    ``model_spec`` (the classifier's input) goes to the backends that make the classifier's input
    on their own thread (replay, opencv): the sorting loop then does not resize frames.
    """
    camera = config.camera
    if camera.type == "replay":
        replay = camera.replay
        return {"path": str(resolve_path(replay.path, config.source_path)), "fps": replay.fps,
                "loop": replay.loop, "order": replay.order, "empty_frames": replay.empty_frames,
                "present_frames": replay.present_frames, "tray_size": replay.tray_size,
                "model_spec": model_spec}
    if camera.type == "fake":
        fake = camera.fake
        blank = np.full((fake.size[1], fake.size[0], 3), 128, np.uint8)
        return {"frames": [blank] * fake.frames, "block_after": fake.block_after, "fps": camera.fps}
    size = {"width": camera.width, "height": camera.height, "fps": camera.fps}
    return {"device": camera.device, **size, "model_spec": model_spec} if camera.type == "opencv" else size


def open_camera(config: Config, model_spec: InputSpec | None = None):
    """Opens the frame source of ``camera.type`` (``model_spec`` as for ``camera_options``).

    Raises:
        CameraError: no camera could be opened (``auto`` suggests ``--replay``).
    """
    from edge.camera import open_source

    return open_source(config.camera.type, **camera_options(config, model_spec))


def build_link(config: Config, store, *, on_command=None, stats_provider=None, discovery_provider=None):
    """The MQTT link of the ``mqtt`` section (not yet started), delivering ``store``'s outbox.

    Raises:
        ConfigError: the password file or TLS files cannot be read.
    """
    from edge.mqtt import MqttLink

    settings = config.mqtt
    return MqttLink(settings, config.device.id, store, password=read_mqtt_password(settings, config.source_path),
                    on_command=on_command, stats_provider=stats_provider, discovery_provider=discovery_provider,
                    config_path=config.source_path)


def build_web(config: Config, classifier, decider, *, status_provider=None, state_dir=None):
    """The status page and classify API of the ``web`` section (not yet started)."""
    from edge.web.server import WebServer

    web = config.web
    return WebServer(host=web.host, port=web.port, classifier=classifier, decider=decider,
                     status_provider=status_provider, max_upload_bytes=int(web.max_upload_mb * 1024 * 1024),
                     state_dir=state_dir, keep_uploads=web.keep_uploads, allowed_hosts=web.allowed_hosts,
                     device_id=config.device.id)
