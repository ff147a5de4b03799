"""Checks of a whole ``smartbin.yaml`` beyond each key's own: problems across sections (a bin the
flap has no angle for, TLS files that cannot be loaded), and warnings about legal but risky settings
or a model the config does not fit.

Usage:
    from edge.config_checks import config_warnings, model_warnings
    for key, warning in config_warnings(config) + model_warnings(config, bundle):
        print(f"warning: {key}: {warning}")
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from edge import gpio
from edge.bundle import normal_label
from edge.config import (CREDENTIAL_NAME, INSTALLED_CONFIG_DIR, Config, TlsConfig, credential_path,
                         installed_credential, is_loopback, resolve_path, tls_paths)

if TYPE_CHECKING:
    from pathlib import Path

    from edge.bundle import Bundle

MIN_REAL_SETTLE_S = 0.15  # servo travel (~0.1 s per 60 degrees) plus a short drop


def cross_field_problems(config: Config) -> list[tuple[str, str]]:
    """Problems that involve more than one section (a bin the flap has no angle for, ...)."""
    problems = []
    flap = config.flap
    if not flap.min_pulse_width < flap.max_pulse_width < flap.frame_width:  # gpiozero's own rule
        problems.append(("flap.max_pulse_width", "need min_pulse_width < max_pulse_width < frame_width"))
    if flap.min_angle == flap.max_angle:
        problems.append(("flap.min_angle", "must differ from flap.max_angle (greater reverses the servo)"))
    low, high = sorted((flap.min_angle, flap.max_angle))
    for key, angle in [("flap.neutral_angle", flap.neutral_angle)] + [
            (f"flap.angles.{name}", angle) for name, angle in flap.angles.items()]:
        if not low <= angle <= high:
            problems.append((key, f"{angle} is outside [{low}, {high}]"))
    pins = {"flap.pin": flap.pin}
    if config.detector.type == "sensor":
        pins["detector.sensor_pin"] = config.detector.sensor_pin
    names = {}
    for key, pin in pins.items():
        try:
            names[key] = gpio.gpio_name(pin)
        except ValueError as err:
            problems.append((key, f"{err} (a GPIO number, BCM: 18 = header pin 12; or BOARD12)"))
    if len(names) == 2 and names["flap.pin"] == names["detector.sensor_pin"]:
        problems.append(("detector.sensor_pin", f"{names['flap.pin']} already drives the flap (flap.pin: {flap.pin})"))
    x, y, width, height = config.detector.roi
    if not (0 <= x < 1 and 0 <= y < 1 and width > 0 and height > 0 and x + width <= 1 and y + height <= 1):
        problems.append(("detector.roi", "must be [x, y, width, height] fractions inside the frame"))
    angles = flap.angles
    for label, bin_name in config.decision.bins.items():
        if bin_name not in angles:
            problems.append((f"decision.bins.{label}", f"bin {bin_name!r} has no angle in flap.angles"))
    if config.decision.reject_bin not in angles:
        problems.append(("decision.reject_bin", f"bin {config.decision.reject_bin!r} has no angle in flap.angles"))
    if config.camera.type == "replay" and not config.camera.replay.path:
        problems.append(("camera.replay.path", "camera type replay needs a photo folder (or use --replay DIR)"))
    replay, detector = config.camera.replay, config.detector
    if config.camera.type == "replay" and detector.type == "occupancy":
        # The simulated tray must give the detector what it needs, or items are silently missed.
        if replay.empty_frames < max(detector.background_frames, detector.empty_frames_to_rearm):
            problems.append(("camera.replay.empty_frames", "must be at least detector.background_frames and "
                                                           "detector.empty_frames_to_rearm"))
        if replay.present_frames < max(detector.classify_frames, detector.still_frames + 1):
            problems.append(("camera.replay.present_frames", "must be at least detector.classify_frames and "
                                                             "detector.still_frames + 1"))
    if config.camera.type == "replay" and detector.type == "sensor" and config.flap.pin_factory == "mock":
        # The replayed photos break the simulated beam (--mock-gpio): it must stay broken long enough.
        if replay.present_frames < detector.sensor_settle_frames + detector.classify_frames:
            problems.append(("camera.replay.present_frames", "must be at least detector.sensor_settle_frames + "
                                                             "detector.classify_frames"))
    if config.mqtt.reconnect_min_s > config.mqtt.reconnect_max_s:
        problems.append(("mqtt.reconnect_min_s", "must not exceed mqtt.reconnect_max_s"))
    tls = config.mqtt.tls
    if bool(tls.certfile) != bool(tls.keyfile):
        problems.append(("mqtt.tls.certfile", "certfile and keyfile go together"))
    if config.mqtt.password_file and not config.mqtt.username:
        problems.append(("mqtt.password_file", "needs mqtt.username: a broker checks a password only with a user name"))
    missing = []
    for key, value, path in _mqtt_files(config):
        if not path.is_file():
            missing.append(key)
            problems.append((key, f"is a folder, not a file: {value}" if path.is_dir() else f"file not found: {value}"))
    if tls.enabled and not {"mqtt.tls.ca_file", "mqtt.tls.certfile", "mqtt.tls.keyfile"} & set(missing):
        problems += tls_file_problems(tls, config.source_path)
    return problems


def camera_input_problems(config: Config) -> list[tuple[str, str]]:
    """A replay folder or video file that is not there: `run` would refuse it (exit 2) at start.

    Checked by `run` and `validate-config` only: the commands that open no camera (`web`,
    `calibrate-flap`, `classify`) must work with a config whose USB stick is not plugged in.
    """
    camera = config.camera
    if camera.type == "replay" and camera.replay.path:
        value = camera.replay.path
        folder = resolve_path(value, config.source_path)
        if folder.is_file():
            return [("camera.replay.path", f"is a file; replay takes a folder of photos: {value}")]
        if not folder.is_dir():
            return [("camera.replay.path", f"folder not found: {value}")]
    if camera.type == "opencv" and isinstance(camera.device, str):
        from edge.camera.opencv import looks_like_a_missing_file, parse_device

        if not camera.device.strip():
            return [("camera.device", "empty: a camera index (0), a video file, or a stream URL")]
        device = parse_device(camera.device)
        if isinstance(device, str) and os.path.isdir(device):
            return [("camera.device", f"is a folder, not a video file or camera: {device} (a folder of photos is "
                                      f"replayed: camera.type replay)")]
        if isinstance(device, str) and looks_like_a_missing_file(device):
            return [("camera.device", f"video file not found: {device}")]
    return []


def tls_file_problems(tls: TlsConfig, source_path: str | None) -> list[tuple[str, str]]:
    """The TLS files loaded as the MQTT link will load them: a CA file that holds no certificate,
    a key that does not fit its certificate... named by key now rather than at the first connection."""
    import ssl

    ca_file, certfile, keyfile = tls_paths(tls, source_path)

    def no_passphrase():
        # An encrypted key would make OpenSSL ask for its passphrase on the terminal; the bin cannot.
        raise ValueError("the key is encrypted with a passphrase, which the bin cannot type: store it unencrypted "
                         "(readable by the service only)")

    context = ssl.create_default_context()
    checks = [("mqtt.tls.ca_file", lambda: context.load_verify_locations(cafile=ca_file), ca_file),
              ("mqtt.tls.certfile", lambda: context.load_cert_chain(certfile, keyfile, password=no_passphrase),
               certfile and keyfile)]  # one without the other is its own problem already
    problems = []
    for key, load, value in checks:
        if value:
            try:
                load()
            except PermissionError:
                continue  # readable by the service user only (as it should be): not this user's to judge
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                problems.append((key, f"cannot be used: {err}"))
    return problems


def unreadable_files(config: Config) -> list[tuple[str, str]]:
    """The MQTT files (TLS, password) that exist but this user cannot read, as ``(key, problem)``.

    Only the service's own user can judge: run as another user (root can read anything; ``pi``
    cannot read a file kept for the service only), ``validate-config --as-service`` is how
    ``install.sh`` asks as the service user.
    """
    import getpass

    found = []
    for key, _, path in _mqtt_files(config):
        if (key.startswith("mqtt.tls.") and not config.mqtt.tls.enabled) or not path.is_file():
            continue  # unused TLS files are not read; missing files are a problem of their own
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except PermissionError:
            found.append((key, f"user {getpass.getuser()} cannot read {path} (permission denied)"))
        except OSError:
            continue
    return found


def _mqtt_files(config: Config) -> list[tuple[str, str, Path]]:
    """``(key, value, resolved path)`` of each MQTT file setting (TLS files, password file) that is set."""
    tls = config.mqtt.tls
    settings = (("mqtt.tls.ca_file", tls.ca_file), ("mqtt.tls.certfile", tls.certfile),
                ("mqtt.tls.keyfile", tls.keyfile), ("mqtt.password_file", config.mqtt.password_file))
    return [(key, value, resolve_path(value, config.source_path)) for key, value in settings if value]


def config_warnings(config: Config) -> list[tuple[str, str]]:
    """Legal but risky settings, as ``(key, warning)`` pairs."""
    warnings = []
    mqtt = config.mqtt
    if mqtt.enabled and not mqtt.tls.enabled and not is_loopback(mqtt.host):
        warnings.append(("mqtt.tls.enabled", f"broker {mqtt.host} is not on this machine and TLS is off: "
                                             "events and the password cross the network in clear text"))
    if not mqtt.tls.enabled and (mqtt.tls.ca_file or mqtt.tls.certfile or mqtt.tls.keyfile):
        warnings.append(("mqtt.tls.enabled", "TLS files are set but TLS is off: they are not used"))
    if mqtt.password_file and _empty_file(resolve_path(mqtt.password_file, config.source_path)):
        warnings.append(("mqtt.password_file", f"{mqtt.password_file} is empty: the broker gets an empty password"))
    if mqtt.enabled and mqtt.tls.insecure:
        warnings.append(("mqtt.tls.insecure", "the broker's host name is not checked"))
    if mqtt.enabled and mqtt.username and not mqtt.password_file and not credential_path():
        where = (f"; {INSTALLED_CONFIG_DIR / CREDENTIAL_NAME} reaches the bin only as the systemd credential, so "
                 "it is used by the service, not by a bin started by hand") if installed_credential() else ""
        warnings.append(("mqtt.password_file", f"a username is set but no password file or systemd credential{where}"))
    if config.web.enabled and not is_loopback(config.web.host):
        warnings.append(("web.host", f"the web page listens on {config.web.host}, reachable from the network"))
    flap = config.flap
    at_angle: dict[float, list[str]] = {}
    for name in sorted(set(config.decision.bins.values()) | {config.decision.reject_bin}):
        if name in flap.angles:
            at_angle.setdefault(flap.angles[name], []).append(name)
    for angle, names in sorted(at_angle.items()):
        if len(names) > 1:  # legal (two streams into one container), but then the bin counts sort nothing
            warnings.append((f"flap.angles.{names[1]}", f"bins {', '.join(names)} share the angle {angle:g}: "
                                                        f"items for them land in the same place"))
    if flap.pin_factory != "mock" and not gpio.pins_checked():
        warnings.append(("flap.pin", "gpiozero is not installed here, so GPIO pin names and numbers were not "
                                     "checked (pip install '.[edge]')"))
    if flap.pin_factory != "mock" and flap.settle_s < MIN_REAL_SETTLE_S:
        warnings.append(("flap.settle_s", f"{flap.settle_s:g} s is less than a servo needs to travel (about 0.1 s "
                                          f"per 60 degrees) and the item to drop: the flap would not reach the bin"))
    views = config.model.views
    frames = config.detector.classify_frames
    if config.detector.type == "every_frame" and len(views) > 1:
        warnings.append(("model.views", f"detector.type every_frame classifies each frame alone, shown as "
                                        f"{views[0]} only (classify and the web page show every view): set "
                                        f"model.views: [{views[0]}]"))
    elif config.detector.type != "every_frame" and frames % len(views):
        shown = ", ".join(views[i % len(views)] for i in range(frames))
        warnings.append(("model.views", f"each item's {frames} classified frame(s) are shown as {shown}: the views "
                                        f"do not count equally (and classify and the web page, which show every "
                                        f"view once, may answer otherwise); make detector.classify_frames a "
                                        f"multiple of {len(views)} or list fewer views"))
    pins = {"flap.pin": flap.pin} | ({"detector.sensor_pin": config.detector.sensor_pin}
                                     if config.detector.type == "sensor" else {})
    for key, pin in pins.items():
        with contextlib.suppress(ValueError):  # an invalid pin is already a problem
            name = gpio.gpio_name(pin)
            if name in gpio.SPOKEN_FOR:
                warnings.append((key, f"{name} is usually taken by {gpio.SPOKEN_FOR[name]}; GPIO 17, 18, 22-27 are free"))
    return warnings


def _empty_file(path) -> bool:
    try:
        return path.is_file() and not path.read_bytes().strip()
    except OSError:  # readable by the service only (root-owned 0600): not ours to judge here
        return False


def model_warnings(config: Config, bundle: Bundle) -> list[tuple[str, str]]:
    """How the model and the config disagree, as ``(key, warning)`` pairs.

    All of it is legal (an unmapped label goes to the reject bin; a mapped name the model never
    says is unused), but after retraining on new classes it usually means the config was not
    updated: every item would land in the reject bin.
    """
    decision, labels = config.decision, bundle.labels
    mapped = {normal_label(name) for name in decision.bins}
    known = {normal_label(label): label for label in labels}
    warnings = []
    unmapped = [label for label in labels if normal_label(label) not in mapped]
    if unmapped and len(unmapped) == len(labels):
        warnings.append(("decision.bins", f"no label of the model has a bin: every item goes to "
                                          f"{decision.reject_bin!r}; the model's labels are {', '.join(labels)}"))
    elif unmapped:
        warnings.append(("decision.bins", f"labels without a bin go to {decision.reject_bin!r}: "
                                          f"{', '.join(unmapped)}"))
    for name in decision.bins:
        if normal_label(name) not in known:
            warnings.append((f"decision.bins.{name}", f"not a label of the model (never used){_hint(name, bundle)}; "
                                                      f"the model's labels are {', '.join(labels)}"))
    top = _highest_confidence(bundle)
    if top is not None and decision.min_confidence > top:
        warnings.append(("decision.min_confidence", f"{decision.min_confidence:g} is above the highest confidence "
                                                    f"this model can output ({top:.4f}): every item would be rejected"))
    return warnings


def _hint(name: str, bundle: Bundle) -> str:
    folded = {normal_label(label).casefold(): label for label in bundle.labels}
    if normal_label(name).casefold() in folded:
        return f"; did you mean {folded[normal_label(name).casefold()]!r}?"
    merged = {normal_label(source): target for source, target in bundle.manifest.label_map.items()}
    if normal_label(name) in merged:
        return f"; the model's label map merged the folder {name!r} into {merged[normal_label(name)]!r}: map that"
    return ""


def _highest_confidence(bundle: Bundle) -> float | None:
    output = bundle.manifest.output
    if output.dtype not in ("uint8", "int8") or not output.scale:
        return None
    top = 255 if output.dtype == "uint8" else 127
    return output.scale * (top - output.zero_point)
