"""The daemon's configuration: reading ``smartbin.yaml``, checking it, and the paths it names.

The sections themselves (one pydantic model each, every key described) are in
``edge.config_schema`` and re-exported here. Unknown keys are errors (``extra="forbid"``), so
a typo never silently falls back to a default. ``load_config`` turns YAML errors, unknown keys, bad types and cross-field
mistakes into one ``ConfigError`` whose ``problems`` are ``(dotted.key, problem)`` pairs,
which ``smartbin validate-config`` prints one a line.

Usage:
    from edge.config import load_config
    config = load_config("firmware_config/smartbin.yaml", {"camera.type": "replay"})
    print(config.mqtt.topic_root(config.device.id))
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from edge.config_schema import (CameraConfig, Config, DecisionConfig, DetectorConfig, DeviceConfig,  # noqa: F401
                                FakeCameraConfig, FlapConfig, HomeAssistantConfig, ModelConfig, MqttConfig,
                                ReplayConfig, ReviewConfig, Section, TlsConfig, WatchdogConfig, WebConfig)
from edge.bundle import normal_label
from edge import gpio
from edge.errors import ConfigError
from edge.yaml_unique import DuplicateKeyError, load_unique, syntax_error_text

if TYPE_CHECKING:
    from edge.bundle import Bundle

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SYSTEM_CONFIG = Path("/etc/smartbin/smartbin.yaml")
# A source checkout ships firmware_config/; an installed Pi has /etc/smartbin (see install.sh).
DEFAULT_CONFIG = next((path for path in (PACKAGE_ROOT / "firmware_config" / "smartbin.yaml", SYSTEM_CONFIG)
                       if path.is_file()), PACKAGE_ROOT / "firmware_config" / "smartbin.yaml")
CREDENTIAL_NAME = "mqtt_password"
INSTALLED_CONFIG_DIR = Path("/etc/smartbin")  # where install.sh keeps the config and the credential
MIN_REAL_SETTLE_S = 0.15  # servo travel (~0.1 s per 60 degrees) plus a short drop
UNION_MEMBER = re.compile(r"^(int|str|float|bool|none|tuple\[.*\]|list\[.*\]|dict\[.*\])$")


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
    for key, value in (("mqtt.tls.ca_file", tls.ca_file), ("mqtt.tls.certfile", tls.certfile),
                       ("mqtt.tls.keyfile", tls.keyfile), ("mqtt.password_file", config.mqtt.password_file)):
        if value and not resolve_path(value, config.source_path).is_file():
            problems.append((key, f"file not found: {value}"))
    return problems


def config_warnings(config: Config) -> list[tuple[str, str]]:
    """Legal but risky settings, as ``(key, warning)`` pairs."""
    warnings = []
    mqtt = config.mqtt
    if mqtt.enabled and not mqtt.tls.enabled and not is_loopback(mqtt.host):
        warnings.append(("mqtt.tls.enabled", f"broker {mqtt.host} is not on this machine and TLS is off: "
                                             "events and the password cross the network in clear text"))
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


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1): nothing off this machine gets in."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def credential_path() -> Path | None:
    """The systemd credential file (``LoadCredential=mqtt_password:...``) when it exists."""
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    if folder and (Path(folder) / CREDENTIAL_NAME).is_file():
        return Path(folder) / CREDENTIAL_NAME
    return None


def installed_credential() -> bool:
    """True when install.sh's credential source exists and is not empty (checked outside systemd)."""
    try:
        return (INSTALLED_CONFIG_DIR / CREDENTIAL_NAME).stat().st_size > 0
    except OSError:
        return False


def read_mqtt_password(mqtt: MqttConfig, config_path: str | None = None) -> str | None:
    """The broker password: from ``password_file``, else the systemd credential, else ``None``.

    Raises:
        ConfigError: the password file cannot be read.
    """
    path = resolve_path(mqtt.password_file, config_path) if mqtt.password_file else credential_path()
    if path is None:
        return None
    try:
        # An empty file means "no password": install.sh always creates the systemd credential file.
        return path.read_text(encoding="utf-8").strip("\r\n") or None
    except OSError as err:
        raise ConfigError([("mqtt.password_file", f"cannot read {path}: {err.strerror}")]) from None


def resolve_path(value: str | os.PathLike, config_path: str | os.PathLike | None = None) -> Path:
    """Resolves a path from the config: absolute as is; relative beside the config file, in the CWD, or the install.

    Returns the first candidate that exists, else the path beside the config file (or in the CWD).
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    bases = ([Path(config_path).resolve().parent] if config_path else []) + [Path.cwd(), PACKAGE_ROOT]
    for base in bases:
        if (base / path).exists():
            return base / path
    return bases[0] / path


def model_dir(config: Config) -> Path:
    """The model bundle folder of ``model.path`` (relative paths as ``resolve_path`` finds them)."""
    return resolve_path(config.model.path, config.source_path)


def state_dir(config: Config) -> Path:
    """The folder for the store and review photos (created on use by the store)."""
    if config.device.state_dir:
        return resolve_path(config.device.state_dir, None)
    if os.environ.get("STATE_DIRECTORY"):
        # systemd may list several folders separated by ':'; ours is the first.
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    return Path.home() / ".local" / "state" / "smartbin"


def load_config(path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Reads, validates and returns the configuration.

    Args:
        path: the YAML file; ``None`` uses the shipped ``firmware_config/smartbin.yaml``, or defaults when absent.
        overrides: dotted keys set after reading, e.g. ``{"camera.replay.path": "photos/"}`` (command-line options).

    Raises:
        ConfigError: every problem found, as ``(dotted.key, problem)`` pairs.
    """
    source = str(path if path is not None else DEFAULT_CONFIG)
    try:
        data = read_yaml(path) if path is not None else (read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else {})
        for key, value in (overrides or {}).items():
            set_dotted(data, key, value)
        return config_from_dict(data, source)
    except ConfigError as err:
        err.source = source
        raise


def config_from_dict(data: dict[str, Any], source_path: str | None = None) -> Config:
    """Validates already-parsed config data (see ``load_config``)."""
    problems = []
    if isinstance(data.get("mqtt"), dict) and "password" in data["mqtt"]:
        problems.append(("mqtt.password", "passwords never go in the YAML: use mqtt.password_file or the systemd "
                                          "credential mqtt_password"))
        data = {**data, "mqtt": {k: v for k, v in data["mqtt"].items() if k != "password"}}
    if "source_path" in data:
        problems.append(("source_path", "unknown key"))
        data = {k: v for k, v in data.items() if k != "source_path"}
    try:
        config = Config.model_validate({**data, "source_path": source_path})
    except ValidationError as err:
        raise ConfigError(problems + validation_problems(err, data)) from None
    problems += cross_field_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def validation_problems(err: ValidationError, data: Any = None) -> list[tuple[str, str]]:
    """pydantic's errors as ``(dotted.key, problem)`` pairs, one per key; ``data`` is the validated input."""
    problems: dict[str, str] = {}
    for item in err.errors():
        loc = readable_location(item["loc"], data)
        key = ".".join(loc) or "config"
        if loc and loc[0] == "detector" and loc[1:2] == ["roi"]:
            key, item = "detector.roi", {**item, "type": "value_error", "msg": "must be [x, y, width, height]"}
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif item["type"] == "model_type":  # "a valid dictionary or instance of MqttConfig": our class name
            message = "should be a section of keys (key: value lines indented below it)"
        elif "input" in item and item["type"] not in ("missing",) and not isinstance(item["input"], (dict, list)):
            message = f"{message} (got {item['input']!r})"
        # A union reports each member; one line per key reads better.
        problems[key] = f"{problems[key]}; {message}" if key in problems and message not in problems[key] else message
    return list(problems.items())


def readable_location(loc: tuple, data: Any) -> list[str]:
    """An error's location without the union member pydantic adds ("int", "str"): it only confuses
    readers. A part that is a key of the input (a bin or label the user named "none") is kept."""
    parts, node = [], data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif UNION_MEMBER.match(str(part)):
            continue
        else:
            node = None
        parts.append(str(part))
    return parts


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Parses a YAML file into a dict; every failure becomes a ``ConfigError``."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("config", f"file not found: {path}")]) from None
    except UnicodeDecodeError as err:  # an editor saving Windows-1252 ("é" in a comment): say where
        line = err.object[:err.start].count(b"\n") + 1
        raise ConfigError([("config", f"{path}: line {line} is not UTF-8 text (byte 0x{err.object[err.start]:02x}); "
                                      f"save the file as UTF-8")]) from None
    except OSError as err:
        raise ConfigError([("config", f"cannot read {path}: {err}")]) from None
    try:
        data = load_unique(text)
    except DuplicateKeyError as err:
        raise ConfigError([(err.path, f"{path}: line {err.line}: appears again (first on line {err.first}); "
                                     f"YAML would silently keep only the last one")]) from None
    except yaml.YAMLError as err:
        raise ConfigError([("config", f"{path}: {syntax_error_text(err)}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("config", f"{path}: the top level must be a mapping of sections")])
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``data["a"]["b"] = value`` for ``key="a.b"``, creating sections as needed."""
    *parents, last = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.get(part)
        if child is None:  # absent, or written as an empty section ("camera:")
            child = node[part] = {}
        elif not isinstance(child, dict):  # replacing it would hide the file's mistake behind the option
            raise ConfigError([(".".join(parents[:depth + 1]), f"must be a section of keys, not {child!r}")])
        node = child
    node[last] = value
