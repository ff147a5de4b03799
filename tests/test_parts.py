"""parts: each config section builds its part, and a part that cannot be built says why."""

from __future__ import annotations

import pytest

from edge import parts
from edge.bundle import InputSpec
from edge.config import config_from_dict
from edge.detector import EveryFrameTrigger, ItemDetector, SensorTrigger
from edge.errors import FlapError


def config(**sections):
    data = {"flap": {"pin_factory": "mock", "settle_s": 0}}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data)


def test_each_detector_type_builds_its_trigger_and_only_sensor_a_beam_sensor():
    trigger, sensor = parts.build_trigger(config(detector={"type": "occupancy", "classify_frames": 4}))
    assert isinstance(trigger, ItemDetector) and trigger.classify_frames == 4 and sensor is None
    trigger, sensor = parts.build_trigger(config(detector={"type": "every_frame"}))
    assert isinstance(trigger, EveryFrameTrigger) and sensor is None
    trigger, sensor = parts.build_trigger(config(detector={"type": "sensor", "sensor_settle_frames": 1}))
    try:
        assert isinstance(trigger, SensorTrigger) and trigger.settle_frames == 1
        assert trigger.is_active == sensor.is_active
    finally:
        sensor.close()


def test_a_mock_beam_sensor_with_a_replay_is_broken_by_the_replayed_photos(tmp_path):
    import numpy as np

    from edge.camera import Frame
    from edge.detector import ReplayedBeam

    replay = {"type": "replay", "replay": {"path": str(tmp_path)}}
    trigger, sensor = parts.build_trigger(config(detector={"type": "sensor"}, camera=replay))
    try:
        assert isinstance(trigger, ReplayedBeam) and isinstance(trigger.trigger, SensorTrigger)
        assert trigger.trigger.clear_s == 0  # a simulated beam does not bounce
        image = np.zeros((8, 8, 3), np.uint8)
        trigger.update(Frame(image=image, ts=0.0, index=0, source_id="glass/1.jpg"))
        assert sensor.is_active()
        trigger.update(Frame(image=image, ts=0.1, index=1))
        assert not sensor.is_active()
    finally:
        sensor.close()
    trigger, sensor = parts.build_trigger(config(detector={"type": "sensor"}, camera={"type": "fake"}))
    try:
        assert isinstance(trigger, SensorTrigger)  # a live beam is read, never driven
    finally:
        sensor.close()


def test_the_flap_starts_parked_and_a_bad_factory_suggests_the_mock():
    flap = parts.build_flap(config(flap={"neutral_angle": 10}))
    try:
        assert flap.history[:2] == [10.0, None] and flap.is_detached
    finally:
        flap.close()
    with pytest.raises(FlapError, match="--mock-gpio"):
        parts.build_flap(config(flap={"pin_factory": "rpigpio"}))  # no RPi.GPIO off a Pi


def test_replay_paths_are_resolved_beside_the_config_file(tmp_path):
    (tmp_path / "photos").mkdir()
    settings = config_from_dict({"camera": {"type": "replay", "replay": {"path": "photos", "fps": 0}}},
                                source_path=str(tmp_path / "smartbin.yaml"))
    options = parts.camera_options(settings)
    assert options["path"] == str(tmp_path / "photos") and options["fps"] == 0


def test_opencv_gets_the_device_and_capture_size_and_picamera2_only_the_size():
    options = parts.camera_options(config(camera={"type": "opencv", "device": "rtsp://cam/1", "width": 320}))
    assert options == {"device": "rtsp://cam/1", "width": 320, "height": 480, "fps": 10.0, "model_spec": None}
    assert parts.camera_options(config(camera={"type": "picamera2"})) == {"width": 640, "height": 480, "fps": 10.0}


def test_the_classifiers_input_size_goes_to_the_sources_that_resize_off_the_loop(tmp_path):
    spec = InputSpec(height=384, width=384)
    for camera in ({"type": "replay", "replay": {"path": str(tmp_path)}}, {"type": "opencv"}):
        assert parts.camera_options(config(camera=camera), spec)["model_spec"] is spec
    for camera in ({"type": "picamera2"}, {"type": "fake"}, {"type": "auto"}):  # capture on the loop, or probing
        assert "model_spec" not in parts.camera_options(config(camera=camera), spec)


def test_the_classifier_and_decider_follow_the_config(tiny_bundle):
    settings = config(model={"path": str(tiny_bundle), "threads": 1},
                      decision={"bins": {"glass": "glass"}, "reject_bin": "rest", "min_confidence": 0.7})
    classifier = parts.load_classifier(settings)
    assert classifier.labels == ("cardboard", "glass", "metal") and classifier.threads == 1
    decider = parts.build_decider(settings)
    assert decider.bins == {"glass": "glass"} and decider.min_confidence == 0.7
