"""The daemon's configuration: one pydantic model per YAML section, every key described.

Unknown keys are errors (``extra="forbid"``), so a typo never silently falls back to a
default. ``load_config`` turns YAML errors, unknown keys, bad types and cross-field
mistakes into one ``ConfigError`` whose ``problems`` are ``(dotted.key, problem)`` pairs,
which ``smartbin validate-config`` prints one a line.

Usage:
    from edge.config import load_config
    config = load_config("firmware_config/smartbin.yaml", {"camera.type": "replay"})
    print(config.mqtt.topic_root(config.device.id))
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.errors import ConfigError

CONFIG_VERSION = 1
PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SYSTEM_CONFIG = Path("/etc/smartbin/smartbin.yaml")
# A source checkout ships firmware_config/; an installed Pi has /etc/smartbin (see install.sh).
DEFAULT_CONFIG = next((path for path in (PACKAGE_ROOT / "firmware_config" / "smartbin.yaml", SYSTEM_CONFIG)
                       if path.is_file()), PACKAGE_ROOT / "firmware_config" / "smartbin.yaml")
DEFAULT_MODEL = "models/trashnet-efficientnet-lite0-int8"
CREDENTIAL_NAME = "mqtt_password"
TOPIC_SAFE = r"^[A-Za-z0-9_-]+$"
UNION_MEMBER = re.compile(r"^(int|str|float|bool|none|tuple\[.*\]|list\[.*\]|dict\[.*\])$")


class Section(BaseModel):
    """Base of every section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DeviceConfig(Section):
    id: str = Field("smartbin-1", pattern=TOPIC_SAFE,
                    description="Name of this bin in MQTT topics and Home Assistant (letters, digits, - and _).")
    state_dir: str | None = Field(
        None, description="Folder for the SQLite store and the review photos. Empty: $STATE_DIRECTORY "
                          "(set by systemd's StateDirectory=) or ~/.local/state/smartbin.")


class ModelConfig(Section):
    path: str = Field(DEFAULT_MODEL, description="Model bundle folder; a relative path is looked up beside the "
                                                 "config file, then in the current folder, then in the install.")
    threads: int = Field(2, ge=1, le=16, description="LiteRT interpreter threads.")
    edgetpu: bool = Field(False, description="Use the Coral Edge TPU delegate when the bundle has an Edge TPU model "
                                             "(falls back to the CPU model with a warning).")


class ReplayConfig(Section):
    path: str | None = Field(None, description="Folder of photos (class subfolders become the `truth` of events).")
    fps: float = Field(10.0, ge=0, description="Frames per second; 0 replays as fast as the pipeline goes.")
    loop: bool = Field(False, description="Start again after the last photo instead of stopping the daemon.")
    empty_frames: int = Field(4, ge=1, description="Empty-tray frames shown between two items.")
    present_frames: int = Field(6, ge=1, description="Frames for which each item lies still on the tray.")
    tray_size: tuple[int, int] = Field((512, 384), description="Simulated tray frame size [width, height].")


class FakeCameraConfig(Section):
    frames: int = Field(100, ge=0, description="How many plain frames the fake camera delivers.")
    block_after: int | None = Field(None, ge=0, description="Hang after this many frames (tests the watchdog).")
    size: tuple[int, int] = Field((64, 48), description="Frame size [width, height].")


class CameraConfig(Section):
    type: Literal["auto", "picamera2", "opencv", "replay", "fake"] = Field(
        "auto", description="auto tries picamera2, then OpenCV device 0; replay reads a photo folder.")
    device: int | str = Field(0, description="OpenCV source: USB camera index, video file or RTSP URL.")
    width: int = Field(640, ge=16, description="Capture width in pixels.")
    height: int = Field(480, ge=16, description="Capture height in pixels.")
    fps: float = Field(10.0, gt=0, le=120, description="Capture frame rate.")
    read_timeout_s: float = Field(5.0, gt=0, description="A read slower than this counts as a camera failure.")
    replay: ReplayConfig = Field(default_factory=ReplayConfig, description="Replay source options.")
    fake: FakeCameraConfig = Field(default_factory=FakeCameraConfig, description="Fake source options (tests).")


class DetectorConfig(Section):
    type: Literal["occupancy", "every_frame", "sensor"] = Field(
        "occupancy", description="occupancy: image difference against the empty tray; sensor: a GPIO break-beam "
                                 "or button; every_frame: classify every frame (demos).")
    roi: tuple[float, float, float, float] = Field(
        (0.0, 0.0, 1.0, 1.0), description="Region of interest [x, y, width, height] as fractions of the frame.")
    diff_threshold: float = Field(25.0, ge=0, le=255, description="Grey-level difference that marks a pixel changed.")
    occupied_fraction: float = Field(0.05, gt=0, le=1, description="Changed-pixel fraction that means an item is there.")
    still_threshold: float = Field(2.0, ge=0, le=255, description="Mean frame-to-frame difference below which the "
                                                                  "item counts as still.")
    still_frames: int = Field(2, ge=1, description="Consecutive still frames before classifying.")
    classify_frames: int = Field(3, ge=1, le=16, description="K: settled frames whose probabilities are averaged.")
    background_frames: int = Field(3, ge=1, description="Frames averaged into the first empty-tray background.")
    empty_frames_to_rearm: int = Field(2, ge=1, description="Empty frames needed before the next item is awaited.")
    background_rate: float = Field(0.05, ge=0, le=1, description="How fast the empty-tray background follows slow "
                                                                 "light changes.")
    sensor_pin: int | str = Field(17, description="GPIO of the break-beam sensor or button (type sensor).")
    sensor_pull_up: bool = Field(True, description="Sensor pulls up (active when it pulls the line low).")
    sensor_settle_frames: int = Field(0, ge=0, description="Frames skipped after the beam breaks, while the item "
                                                           "drops into place (type sensor).")


class ReviewConfig(Section):
    enabled: bool = Field(True, description="Save the frame of every rejected item for later labelling.")
    max_files: int = Field(500, ge=1, description="Oldest review photos are deleted beyond this many.")


class DecisionConfig(Section):
    bins: dict[str, str] = Field(
        default_factory=lambda: {"cardboard": "paper", "paper": "paper", "glass": "glass", "metal": "packaging",
                                 "plastic": "packaging", "trash": "rest"},
        description="Label -> bin; several labels may share a bin.")
    reject_bin: str = Field("rest", description="Bin for items below min_confidence or with an unmapped label.")
    min_confidence: float = Field(0.6, ge=0, le=1, description="Below this the item goes to the reject bin.")
    review: ReviewConfig = Field(default_factory=ReviewConfig, description="Photos of rejected items.")

    @property
    def bin_names(self) -> list[str]:
        return sorted({*self.bins.values(), self.reject_bin})


class FlapConfig(Section):
    pin: int | str = Field(18, description="GPIO of the servo signal (18 = hardware PWM0, header pin 12).")
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native", "mock"] | None = Field(
        None, description="gpiozero pin factory: lgpio (any Pi on Bookworm), rpigpio, pigpio, native, mock. Empty: "
                          "$GPIOZERO_PIN_FACTORY or gpiozero's own choice.")
    angles: dict[str, float] = Field(
        default_factory=lambda: {"paper": -60.0, "glass": -20.0, "packaging": 20.0, "rest": 60.0},
        description="Servo angle per bin in degrees.")
    neutral_angle: float = Field(0.0, description="Angle at rest, between items.")
    min_angle: float = Field(-90.0, description="Angle at min_pulse_width.")
    max_angle: float = Field(90.0, description="Angle at max_pulse_width.")
    min_pulse_width: float = Field(0.0005, gt=0, description="Pulse width in seconds at min_angle (SG90: 0.0005).")
    max_pulse_width: float = Field(0.0025, gt=0, description="Pulse width in seconds at max_angle (SG90: 0.0025).")
    frame_width: float = Field(0.02, gt=0, description="PWM period in seconds (50 Hz servos: 0.02).")
    settle_s: float = Field(0.4, ge=0, le=5, description="Time the item needs to drop before the flap returns.")
    detach_when_idle: bool = Field(True, description="Stop the PWM signal at rest so the servo does not jitter.")



class TlsConfig(Section):
    enabled: bool = Field(False, description="Connect with TLS (port 8883 usually).")
    ca_file: str | None = Field(None, description="CA certificate file; empty: the system's CAs.")
    certfile: str | None = Field(None, description="Client certificate for mutual TLS (optional).")
    keyfile: str | None = Field(None, description="Client key for mutual TLS (optional).")
    insecure: bool = Field(False, description="Skip the host-name check (never in production).")


class HomeAssistantConfig(Section):
    enabled: bool = Field(True, description="Publish Home Assistant MQTT discovery configs (retained).")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")


class MqttConfig(Section):
    enabled: bool = Field(False, description="Publish events, counts and stats to an MQTT broker.")
    host: str = Field("127.0.0.1", description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port (1883 plain, 8883 TLS).")
    prefix: str = Field("smartbin", pattern=r"^[^#+]+$", description="Topics are <prefix>/<device id>/....")
    keepalive: int = Field(30, ge=5, le=3600, description="Seconds between MQTT pings; the broker declares the bin "
                                                          "offline after 1.5 x this.")
    client_id: str | None = Field(None, description="MQTT client id; empty: smartbin-<device id>.")
    username: str | None = Field(None, description="Broker user name.")
    password_file: str | None = Field(
        None, description="File holding the broker password. Never put the password itself in this YAML; under "
                          "systemd the credential mqtt_password (LoadCredential=) is used when present.")
    tls: TlsConfig = Field(default_factory=TlsConfig, description="TLS settings.")
    stats_interval_s: float = Field(30.0, ge=1, description="Seconds between `stats` messages.")
    reconnect_min_s: float = Field(1.0, gt=0, description="First reconnect delay; doubles up to reconnect_max_s.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest reconnect delay.")
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig, description="Discovery.")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def topic_root(self, device_id: str) -> str:
        return f"{self.prefix}/{device_id}"


class WebConfig(Section):
    enabled: bool = Field(False, description="Serve the upload-and-classify page and live status inside `run`.")
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 exposes the page to the network.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on; 0 picks a free port.")
    max_upload_mb: float = Field(10.0, gt=0, le=100, description="Largest accepted upload.")
    keep_uploads: bool = Field(False, description="Keep uploaded photos under <state_dir>/uploads.")


class WatchdogConfig(Section):
    enabled: bool = Field(True, description="Send systemd watchdog pings (only while frames flow) when systemd "
                                            "asks for them with WatchdogSec=.")
    max_frame_gap_s: float = Field(10.0, gt=0, description="No ping when the last frame is older than this.")


class Config(Section):
    """The whole ``smartbin.yaml``."""

    version: Literal[1] = Field(1, description="Config format version.")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Logging level.")
    device: DeviceConfig = Field(default_factory=DeviceConfig, description="This bin.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The classifier bundle.")
    camera: CameraConfig = Field(default_factory=CameraConfig, description="Frame source.")
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Item detection.")
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description="Label -> bin.")
    flap: FlapConfig = Field(default_factory=FlapConfig, description="The sorting servo.")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="MQTT publishing and commands.")
    web: WebConfig = Field(default_factory=WebConfig, description="Local web page.")
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description="systemd watchdog.")
    source_path: str | None = Field(None, exclude=True, description="The file this config was read from (set by "
                                                                     "load_config, not a YAML key).")


def cross_field_problems(config: Config) -> list[tuple[str, str]]:
    """Problems that involve more than one section (a bin the flap has no angle for, ...)."""
    problems = []
    flap = config.flap
    if not flap.min_pulse_width < flap.max_pulse_width <= flap.frame_width:
        problems.append(("flap.max_pulse_width", "need min_pulse_width < max_pulse_width <= frame_width"))
    if flap.min_angle >= flap.max_angle:
        problems.append(("flap.min_angle", "must be below flap.max_angle"))
    for key, angle in [("flap.neutral_angle", flap.neutral_angle)] + [
            (f"flap.angles.{name}", angle) for name, angle in flap.angles.items()]:
        if not flap.min_angle <= angle <= flap.max_angle:
            problems.append((key, f"{angle} is outside [{flap.min_angle}, {flap.max_angle}]"))
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
        warnings.append(("mqtt.password_file", "a username is set but no password file or systemd credential"))
    if config.web.enabled and not is_loopback(config.web.host):
        warnings.append(("web.host", f"the web page listens on {config.web.host}, reachable from the network"))
    return warnings


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
    data = read_yaml(path) if path is not None else (read_yaml(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file() else {})
    source = str(path if path is not None else DEFAULT_CONFIG)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return config_from_dict(data, source)


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
        raise ConfigError(problems + validation_problems(err)) from None
    problems += cross_field_problems(config)
    if problems:
        raise ConfigError(problems)
    return config


def validation_problems(err: ValidationError) -> list[tuple[str, str]]:
    problems: dict[str, str] = {}
    for item in err.errors():
        # pydantic adds the union member it tried ("int", "str") to the location; it only confuses readers.
        loc = [str(part) for part in item["loc"] if not UNION_MEMBER.match(str(part))]
        key = ".".join(loc) or "config"
        if loc and loc[0] == "detector" and loc[1:2] == ["roi"]:
            key, item = "detector.roi", {**item, "type": "value_error", "msg": "must be [x, y, width, height]"}
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")
        elif "input" in item and item["type"] not in ("missing",) and not isinstance(item["input"], (dict, list)):
            message = f"{message} (got {item['input']!r})"
        # A union reports each member; one line per key reads better.
        problems[key] = f"{problems[key]}; {message}" if key in problems and message not in problems[key] else message
    return list(problems.items())


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Parses a YAML file into a dict; every failure becomes a ``ConfigError``."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("config", f"file not found: {path}")]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([("config", f"cannot read {path}: {err}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        raise ConfigError([("config", f"{path}: YAML syntax error at {where}{reason}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("config", f"{path}: the top level must be a mapping of sections")])
    return data


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Sets ``data["a"]["b"] = value`` for ``key="a.b"``, creating sections as needed."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value
