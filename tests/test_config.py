"""The config model: defaults, unknown keys, bad types, cross-field checks, secrets, paths, warnings."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from edge.bundle import OutputSpec
from edge.config import (DEFAULT_CONFIG, Config, config_from_dict, load_config, read_mqtt_password, resolve_path,
                         state_dir)
from edge.config_checks import config_warnings, model_warnings
from edge.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smartbin.yaml"
    path.write_text(text)
    return path


def problems(tmp_path, text: str) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    return dict(caught.value.problems)


def test_the_shipped_config_is_valid_and_keeps_mqtt_off():
    config = load_config(DEFAULT_CONFIG)
    assert config.version == 1
    assert config.mqtt.enabled is False
    assert config.web.host == "127.0.0.1"


def test_an_empty_file_means_every_default(tmp_path):
    assert load_config(write(tmp_path, "")).model_dump() == Config().model_dump()


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, Config.__mro__[1]):
                walk(annotation)
    walk(Config)


def test_unknown_keys_are_errors_named_by_dotted_key(tmp_path):
    assert problems(tmp_path, "camera:\n  tyep: replay\nbogus: 1\n") == {
        "camera.tyep": "unknown key", "bogus": "unknown key"}


def test_bad_types_and_values_name_the_key_and_the_value(tmp_path):
    found = problems(tmp_path, "mqtt:\n  port: abc\ncamera:\n  type: webcam\n")
    assert "mqtt.port" in found and "'abc'" in found["mqtt.port"]
    assert "camera.type" in found and "'webcam'" in found["camera.type"]


def test_a_misspelt_pin_factory_is_caught_by_validation_not_at_start(tmp_path):
    found = problems(tmp_path, "flap:\n  pin_factory: lgpoi\n")
    assert "'lgpoi'" in found["flap.pin_factory"] and "lgpio" in found["flap.pin_factory"]


def test_yaml_syntax_errors_give_the_line(tmp_path):
    found = problems(tmp_path, "camera:\n  type: [replay\n")
    assert "line" in found["config"]


@pytest.mark.parametrize("text, problem", [
    ("mqtt:\n  port: " + "[" * 5000 + "\n", "YAML: nested too deeply to read"),  # was a RecursionError, exit 1
    ("mqtt:\n  port: " + "9" * 5001 + "\n", "YAML: a number too long to read"),  # was a ValueError, exit 1
], ids=["nested-5000-deep", "number-of-5001-digits"])
def test_yaml_python_cannot_read_is_a_config_error_not_a_crash(tmp_path, text, problem):
    assert problem in problems(tmp_path, text)["config"]


def test_a_file_saved_in_windows_1252_names_the_line_to_fix(tmp_path):
    path = tmp_path / "smartbin.yaml"
    path.write_bytes("version: 1\n# café\nmqtt:\n  enabled: false\n".encode("cp1252"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert dict(caught.value.problems)["config"] == (f"{path}: line 2 is not UTF-8 text (byte 0xe9); "
                                                     "save the file as UTF-8")


def test_a_section_whose_keys_are_all_commented_out_means_its_defaults(tmp_path):
    config = load_config(write(tmp_path, "mqtt:\n#  host: broker.local\ncamera:\n  replay:\n"))
    assert config.mqtt == Config().mqtt and config.camera.replay == Config().camera.replay


def test_a_section_given_a_value_says_it_needs_keys_not_a_class_name(tmp_path):
    assert problems(tmp_path, "mqtt: 5\n") == {"mqtt": "should be a section of keys (key: value lines indented "
                                                        "below it)"}


def test_a_key_given_twice_is_an_error_not_a_silent_merge(tmp_path):
    # The second mqtt section would otherwise replace the first, TLS settings and all.
    path = write(tmp_path, "mqtt: {host: broker.lan, tls: {enabled: true}}\nlog_level: info\nmqtt: {enabled: true}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [(key, problem)] = caught.value.problems
    assert key == "mqtt" and "line 3: appears again (first on line 1)" in problem


def test_a_key_given_twice_deep_down_is_named_by_its_whole_path(tmp_path):
    found = problems(tmp_path, "mqtt:\n  tls:\n    enabled: true\n    enabled: false\n")
    assert list(found) == ["mqtt.tls.enabled"] and "line 4: appears again (first on line 3)" in found["mqtt.tls.enabled"]


def test_a_key_given_twice_in_one_of_two_mappings_on_a_line_is_named_in_the_right_one(tmp_path):
    found = problems(tmp_path, "decision: {bins: {glass: glass, glass: rest}, review: {glass: 1}}\n")
    assert list(found) == ["decision.bins.glass"]


def test_a_bin_or_label_the_user_named_like_a_type_keeps_its_name_in_the_error(tmp_path):
    found = problems(tmp_path, "decision: {bins: {none: 5, int: 6}}\n")
    assert set(found) == {"decision.bins.none", "decision.bins.int"}
    assert "(got 5)" in found["decision.bins.none"]


def test_an_override_never_hides_a_section_the_file_got_wrong(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "camera: 5\n"), {"camera.replay.path": "photos"})
    assert dict(caught.value.problems) == {"camera": "must be a section of keys, not 5"}
    assert caught.value.source == str(tmp_path / "smartbin.yaml")


def test_yaml_merge_keys_and_anchors_still_work(tmp_path):
    path = write(tmp_path, "decision: {bins: {<<: {cardboard: paper, glass: glass}, metal: metal}}\n"
                           "flap: {angles: &angles {paper: 10, glass: 20, metal: 30, rest: 0}}\n")
    assert load_config(path).decision.bins == {"cardboard": "paper", "glass": "glass", "metal": "metal"}


def test_a_missing_file_is_one_problem(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.problems == [("config", f"file not found: {tmp_path / 'nope.yaml'}")]


def test_a_missing_default_config_says_where_one_would_be(tmp_path, monkeypatch):
    import edge.config

    # A pip install from a URL: neither a checkout's firmware_config/smartbin.yaml nor /etc/smartbin.
    monkeypatch.setattr(edge.config, "DEFAULT_CONFIG", tmp_path / "firmware_config" / "smartbin.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(edge.config.DEFAULT_CONFIG)
    assert "pass --config FILE" in caught.value.problems[0][1] and "/etc/smartbin/smartbin.yaml" in \
        caught.value.problems[0][1]


def test_a_bin_without_a_flap_angle_is_a_cross_field_error(tmp_path):
    found = problems(tmp_path, "decision:\n  bins: {glass: blue}\n  reject_bin: purple\n")
    assert found == {"decision.bins.glass": "bin 'blue' has no angle in flap.angles",
                     "decision.reject_bin": "bin 'purple' has no angle in flap.angles"}


def test_angles_outside_the_servo_range_are_errors(tmp_path):
    found = problems(tmp_path, "flap:\n  angles: {paper: 120, glass: 0, packaging: 0, rest: 0}\n")
    assert found == {"flap.angles.paper": "120.0 is outside [-90.0, 90.0]"}


def test_a_password_in_the_yaml_is_refused(tmp_path):
    found = problems(tmp_path, "mqtt:\n  password: hunter2\n")
    assert "never go in the YAML" in found["mqtt.password"]


def test_overrides_use_dotted_keys_and_are_validated(tmp_path):
    path = write(tmp_path, "")
    (tmp_path / "photos").mkdir()
    config = load_config(path, {"camera.type": "replay", "camera.replay.path": "photos", "mqtt.port": 1999})
    assert (config.camera.type, config.camera.replay.path, config.mqtt.port) == ("replay", "photos", 1999)
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"camera.type": "replay"})
    assert dict(caught.value.problems) == {
        "camera.replay.path": "camera type replay needs a photo folder (or use --replay DIR)"}


def test_a_replay_folder_or_video_file_that_is_not_there_is_a_problem_for_run_and_validate_config(tmp_path):
    from edge.config_checks import camera_input_problems

    (tmp_path / "photo.jpg").write_bytes(b"x")
    (tmp_path / "clips").mkdir()
    cases = {"camera: {type: replay, replay: {path: gone}}": ("camera.replay.path", "folder not found: gone"),
             "camera: {type: replay, replay: {path: photo.jpg}}": (
                 "camera.replay.path", "is a file; replay takes a folder of photos: photo.jpg"),
             f"camera: {{type: opencv, device: {tmp_path}/gone.mp4}}": (
                 "camera.device", f"video file not found: {tmp_path}/gone.mp4"),
             f"camera: {{type: opencv, device: {tmp_path}/clips}}": (
                 "camera.device", f"is a folder, not a video file or camera: {tmp_path}/clips")}
    for text, (key, problem) in cases.items():
        # The config itself loads: the commands that open no camera (web, calibrate-flap) still work.
        assert dict(camera_input_problems(load_config(write(tmp_path, text + "\n"))))[key].startswith(problem)
    assert dict(camera_input_problems(load_config(write(tmp_path, "camera: {type: opencv, device: ''}\n"))))[
        "camera.device"].startswith("empty: a camera index (0)")
    with pytest.raises(ConfigError, match="model.path: String should have at least 1 character"):
        load_config(write(tmp_path, "model: {path: ''}\n"))
    for device in ("rtsp://cam/1", "/dev/video0", 0):  # live cameras may appear later: not checked
        assert camera_input_problems(load_config(write(tmp_path, f"camera: {{type: opencv, device: {device}}}\n"))) == []


def test_two_spellings_of_one_label_in_decision_bins_are_refused_and_bins_match_in_any_spelling(tmp_path):
    composed, decomposed = "m\u00fcll", "mu\u0308ll"
    with pytest.raises(ConfigError) as error:
        config_from_dict({"decision": {"bins": {composed: "paper", decomposed: "rest"}}})
    assert "are the same label written in two Unicode forms" in dict(error.value.problems)["decision.bins"]
    # A bin typed composed in decision.bins finds its angle under a decomposed key, as labels do.
    config = config_from_dict({"decision": {"bins": {"glass": "gl\u00e4s"}, "reject_bin": "gla\u0308s"},
                               "flap": {"angles": {"gla\u0308s": 10.0}}})
    assert config.decision.bin_names == ["gl\u00e4s"] and config.flap.angles == {"gl\u00e4s": 10.0}


def test_a_key_with_no_value_takes_its_default_and_a_numeric_id_must_be_quoted(tmp_path):
    config = load_config(write(tmp_path, "version:\nlog_level:\nmodel:\n  path:\n"))
    assert (config.version, config.log_level, config.model.path) == (1, Config().log_level, Config().model.path)
    assert load_config(write(tmp_path, "detector:\n  relearn_after_s:\n")).detector.relearn_after_s is None  # "never"
    for written, read in (("007", 7), ("0123", 83), ("12:30", 750)):  # YAML 1.1 numbers
        with pytest.raises(ConfigError) as error:
            load_config(write(tmp_path, f"device:\n  id: {written}\n"))
        assert dict(error.value.problems)["device.id"].startswith(f"YAML read this as the number {read}: quote")
    assert load_config(write(tmp_path, "device:\n  id: '007'\n")).device.id == "007"


def test_ids_and_prefixes_an_mqtt_broker_would_refuse_are_config_errors():
    for section, value, problem in (("device", {"id": "a" * 65}, "device.id: String should have at most 64"),
                                    ("mqtt", {"prefix": "/".join("a" * 17)}, "mqtt.prefix: at most 16 levels"),
                                    ("mqtt", {"prefix": "a" * 129}, "mqtt.prefix: String should have at most 128")):
        with pytest.raises(ConfigError) as error:
            config_from_dict({section: value})
        assert str(error.value).startswith(problem)


def test_relative_paths_resolve_beside_the_config_then_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "models").mkdir()
    (tmp_path / "work" / "data").mkdir(parents=True)
    config_file = tmp_path / "conf" / "smartbin.yaml"
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_path("models", config_file) == tmp_path / "conf" / "models"
    assert resolve_path("data", config_file) == tmp_path / "work" / "data"
    assert resolve_path("/abs/x", config_file) == Path("/abs/x")


def test_the_password_comes_from_the_file_or_the_systemd_credential(tmp_path, monkeypatch):
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = load_config(write(tmp_path, f"mqtt:\n  username: bin\n  password_file: {secret}\n"))
    assert read_mqtt_password(config.mqtt) == "s3cret"
    credentials = tmp_path / "creds"
    credentials.mkdir()
    (credentials / "mqtt_password").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    assert read_mqtt_password(load_config(write(tmp_path, "")).mqtt) == "from-systemd"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert read_mqtt_password(load_config(write(tmp_path, "")).mqtt) is None


def test_warns_when_a_remote_broker_is_used_without_tls(tmp_path):
    remote = load_config(write(tmp_path, "mqtt: {enabled: true, host: broker.example.org}\n"))
    local = load_config(write(tmp_path, "mqtt: {enabled: true, host: localhost}\n"))
    with_tls = load_config(write(tmp_path, "mqtt: {enabled: true, host: 10.0.0.2, tls: {enabled: true}}\n"))
    assert [key for key, _ in config_warnings(remote)] == ["mqtt.tls.enabled"]
    assert config_warnings(local) == []
    assert config_warnings(with_tls) == []


def test_state_dir_prefers_config_then_systemd(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/smartbin")
    assert state_dir(load_config(write(tmp_path, ""))) == Path("/var/lib/smartbin")
    assert state_dir(load_config(write(tmp_path, f"device: {{state_dir: {tmp_path}}}\n"))) == tmp_path


def test_the_shipped_yaml_spells_out_every_key():
    import yaml

    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    expected = Config().model_dump(exclude={"source_path"})

    def walk(want, have, prefix=""):
        for key, value in want.items():
            assert key in have, f"{prefix}{key} is missing from {DEFAULT_CONFIG.name}"
            if isinstance(value, dict) and key not in ("bins", "angles"):
                walk(value, have[key], f"{prefix}{key}.")

    walk(expected, shipped)


@pytest.mark.parametrize("yaml_text, line", [
    ("mqtt: {host: ''}", "mqtt.host: String should have at least 1 character"),
    ("mqtt: {host: 'broker:1883'}", "mqtt.host: a host name or address without a port"),
    ("mqtt: {host: 'my broker'}", "mqtt.host: a host name or address, without spaces"),
    ("mqtt: {prefix: $SYS}", "mqtt.prefix: must not start with '$': brokers keep $ topics for themselves"),
    ("flap: {frame_width: 2}", "flap.frame_width: Input should be less than or equal to 0.05"),
    ("flap: {max_pulse_width: 0.02}", "flap.max_pulse_width: Input should be less than or equal to 0.003"),
    ("flap: {min_pulse_width: 0.0025, max_pulse_width: 0.0005}",
     "flap.max_pulse_width: need min_pulse_width < max_pulse_width < frame_width"),
    ("flap: {min_pulse_width: 0.5}", "flap.min_pulse_width: Input should be less than or equal to 0.003"),  # ms
    ("detector: {type: sensor, sensor_pin: 18}", "detector.sensor_pin: GPIO18 already drives the flap"),
    ("detector: {type: sensor, sensor_pin: BOARD12}", "detector.sensor_pin: GPIO18 already drives the flap"),
    ("flap: {min_angle: -1e308, max_angle: 1e308}", "flap.min_angle: Input should be greater than or equal to -360"),
    ("flap: {settle_s: 2}", "flap.settle_s: Input should be less than or equal to 1.5"),  # a stop must end in time
    ("flap: {pin: 99}", "flap.pin: 99 is not a valid pin name"),
    ("flap: {pin: BOARD1}", "flap.pin: BOARD1 is not a GPIO pin"),
    ("flap: {pin_factory: native}", "flap.pin_factory: Input should be"),
    ("camera: {replay: {tray_size: [-5, 0]}}", "camera.replay.tray_size.0: Input should be greater than or equal to 8"),
    ("camera: {fake: {size: [64, 0]}}", "camera.fake.size.1: Input should be greater than or equal to 8"),
    ("model: {views: []}", "model.views: List should have at least 1 item"),
    ("camera: {type: replay, replay: {path: p, present_frames: 5}}\nflap: {pin_factory: mock}\n"
     "detector: {type: sensor, sensor_pin: 17, sensor_settle_frames: 3, classify_frames: 3}",
     "camera.replay.present_frames: must be at least detector.sensor_settle_frames + detector.classify_frames"),
    ("model: {views: [original, sideways]}", "model.views.1: Input should be 'original', 'mirrored', 'flipped' or"),
    # YAML reads a bare on/no/yes/true as a boolean; pydantic alone would take it as 1 or 0.
    ("mqtt: {port: on}", "mqtt.port: true is a boolean, not allowed here"),
    ("web: {port: no}", "web.port: false is a boolean, not allowed here"),
    ("flap: {pin: true}", "flap.pin: true is a boolean, not allowed here"),
    ("camera: {read_timeout_s: .inf}", "camera.read_timeout_s: Input should be a finite number"),
    ("watchdog: {max_frame_gap_s: .nan}", "watchdog.max_frame_gap_s: Input should be a finite number"),
    ("web: {host: not a host}", "web.host: a host name or address, without spaces"),
    ("web: {host: '0.0.0.0:8080'}", "web.host: a host name or address without a port (the port goes in web.port)"),
    ("flap: {angles: {paper: yes, rest: 0}}", "flap.angles: holds a boolean, not allowed here"),
    ("web: {allowed_hosts: ['bin.lan:80']}", "web.allowed_hosts: a host name or address without a port"),
])
def test_values_that_would_only_fail_at_run_time_are_config_errors(tmp_path, yaml_text, line):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, yaml_text + "\n"))
    assert any(f"{key}: {problem}".startswith(line) for key, problem in error.value.problems)


def bundle_with(labels, label_map=None, output=OutputSpec()):
    """What model_warnings reads of a bundle: its labels, label map and output quantisation."""
    manifest = SimpleNamespace(label_map=label_map or {}, output=output)
    return SimpleNamespace(labels=tuple(labels), manifest=manifest)


def config_with_bins(tmp_path, bins: str, min_confidence: float = 0.5) -> Config:
    return load_config(write(tmp_path, f"decision: {{bins: {{{bins}}}, reject_bin: rest, "
                                       f"min_confidence: {min_confidence}}}\n"
                                       "flap: {angles: {rest: 0, metal: 30, bio: 60}}\n"))


def test_model_warnings_name_each_bin_key_the_model_never_says_with_a_hint(tmp_path):
    config = config_with_bins(tmp_path, "Can: metal, tin: metal, glass: metal")
    bundle = bundle_with(["can", "food"], label_map={"tin": "can", "alu": "can"})
    warnings = dict(model_warnings(config, bundle))
    assert "did you mean 'can'?" in warnings["decision.bins.Can"]
    assert "merged the folder 'tin' into 'can'" in warnings["decision.bins.tin"]
    assert warnings["decision.bins.glass"] == "not a label of the model (never used); the model's labels are can, food"


def test_model_warnings_say_when_no_label_has_a_bin(tmp_path):
    warnings = model_warnings(config_with_bins(tmp_path, "glass: metal"), bundle_with(["can", "food"]))
    assert warnings[0] == ("decision.bins", "no label of the model has a bin: every item goes to 'rest'; "
                                            "the model's labels are can, food")


def test_model_warnings_match_labels_in_unicode_nfc(tmp_path):
    config = config_with_bins(tmp_path, '"Bio-M\u00fcll": bio')
    assert model_warnings(config, bundle_with(["Bio-Mu\u0308ll"])) == []


def test_a_min_confidence_the_int8_model_can_never_reach_is_warned_about(tmp_path):
    config = config_with_bins(tmp_path, "can: metal", min_confidence=1.0)
    warnings = dict(model_warnings(config, bundle_with(["can"])))
    assert warnings["decision.min_confidence"] == ("1 is above the highest confidence this model can output "
                                                   "(0.9961): every item would be rejected")
    float_output = bundle_with(["can"], output=OutputSpec(dtype="float32", scale=0.0))
    assert "decision.min_confidence" not in dict(model_warnings(config, float_output))


def test_a_pin_other_hardware_uses_and_a_settle_time_no_servo_makes_are_warned_about(tmp_path):
    config = load_config(write(tmp_path, "flap: {pin: 2, settle_s: 0.05, pin_factory: lgpio}\n"))
    warnings = dict(config_warnings(config))
    assert "GPIO2 is usually taken by I2C" in warnings["flap.pin"]
    assert "the flap would not reach the bin" in warnings["flap.settle_s"]
    assert "flap.settle_s" not in dict(config_warnings(load_config(write(tmp_path, "flap: {settle_s: 0, pin_factory: mock}\n"))))


def test_the_views_a_config_may_name_are_those_the_classifier_knows():
    import typing

    from edge import imaging
    from edge.config_schema import View

    assert typing.get_args(View) == imaging.VIEWS
    assert Config().model.views == ["original", "mirrored", "flipped"] == list(imaging.DEFAULT_VIEWS)


def test_views_that_do_not_fit_the_classified_frames_are_warned_about(tmp_path):
    def view_warnings(text):
        return [warning for key, warning in config_warnings(load_config(write(tmp_path, text))) if key == "model.views"]

    assert view_warnings("") == []  # 3 frames, 3 views
    assert view_warnings("detector: {classify_frames: 6}\n") == []
    assert view_warnings("detector: {classify_frames: 2}\n") == [
        "each item's 2 classified frame(s) are shown as original, mirrored: the views do not count equally (and "
        "classify and the web page, which show every view once, may answer otherwise); make "
        "detector.classify_frames a multiple of 3 or list fewer views"]
    assert view_warnings("detector: {type: every_frame}\n") == [
        "detector.type every_frame classifies each frame alone, shown as original only (classify and the web page "
        "show every view): set model.views: [original]"]
    assert view_warnings("detector: {type: every_frame}\nmodel: {views: [original]}\n") == []


def test_two_bins_at_one_angle_are_warned_about(tmp_path):
    config = load_config(write(tmp_path, "decision: {bins: {glass: glass, metal: metal}, reject_bin: rest}\n"
                                         "flap: {angles: {rest: 0, glass: 30, metal: 30}}\n"))
    assert ("flap.angles.metal", "bins glass, metal share the angle 30: items for them land in the same place") \
        in config_warnings(config)


def test_pins_go_unchecked_without_gpiozero_and_the_warning_says_so(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gpiozero" else real_find_spec(name, *a))
    config = load_config(write(tmp_path, ""))
    assert any(key == "flap.pin" and "were not checked" in warning for key, warning in config_warnings(config))


@pytest.mark.parametrize("text, key, problem", [
    ('mqtt: {prefix: "x\\0y"}', "mqtt.prefix", "must not be empty or hold # or + (MQTT wildcards) or a control character"),
    ("mqtt: {home_assistant: {discovery_prefix: $SYS}}", "mqtt.home_assistant.discovery_prefix",
     "must not start with '$'"),
    ("device: {id: bin 1}", "device.id", "one or more ASCII letters (a-z, A-Z), digits, - and _, nothing else (got 'bin 1')"),
    ("mqtt: {password_file: pw}", "mqtt.password_file", "needs mqtt.username"),
    ("mqtt: {username: bin, password_file: .}", "mqtt.password_file", "is a folder, not a file: ."),
    ("mqtt: {tls: {enabled: true, ca_file: notacert.pem}}", "mqtt.tls.ca_file", "cannot be used: "),
])
def test_mqtt_settings_a_broker_would_choke_on_are_named_before_the_bin_starts(tmp_path, text, key, problem):
    (tmp_path / "pw").write_text("secret\n")
    (tmp_path / "notacert.pem").write_text("garbage\n")
    assert problem in problems(tmp_path, text)[key]


def test_tls_files_while_tls_is_off_and_an_empty_password_file_are_warned_about(tmp_path):
    (tmp_path / "pw").write_text("\n")
    (tmp_path / "ca.pem").write_text("x")
    config = load_config(write(tmp_path, "mqtt: {username: bin, password_file: pw, tls: {ca_file: ca.pem}}"))
    warned = dict(config_warnings(config))
    assert warned["mqtt.tls.enabled"] == "TLS files are set but TLS is off: they are not used"
    assert warned["mqtt.password_file"] == "pw is empty: the broker gets an empty password"


def test_an_encrypted_client_key_is_named_instead_of_a_passphrase_prompt(tmp_path):
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("no openssl command to make a key with")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem"), "-passout", "pass:secret", "-subj", "/CN=bin", "-days", "1"],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    found = problems(tmp_path, "mqtt: {tls: {enabled: true, certfile: cert.pem, keyfile: key.pem}}")
    assert "the key is encrypted with a passphrase" in found["mqtt.tls.certfile"]
