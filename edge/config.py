"""The daemon's configuration: reading ``smartbin.yaml``, checking it, and the paths it names.

The sections themselves (one pydantic model each, every key described) are in
``edge.config_schema`` and re-exported here; checks across sections and warnings are in
``edge.config_checks``. Unknown keys are errors (``extra="forbid"``), so
a typo never silently falls back to a default. ``load_config`` turns YAML errors, unknown keys, bad types and cross-field
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
from typing import Any

from pydantic import ValidationError

from edge.config_schema import (CameraConfig, Config, DecisionConfig, DetectorConfig, DeviceConfig,  # noqa: F401
                                FakeCameraConfig, FlapConfig, HomeAssistantConfig, ModelConfig, MqttConfig,
                                ReplayConfig, ReviewConfig, Section, TlsConfig, WatchdogConfig, WebConfig,
                                TOPIC_SAFE, TOPIC_TEXT)
from edge.errors import ConfigError
from edge.yaml_unique import DuplicateKeyError, load_unique, syntax_error_text

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SYSTEM_CONFIG = Path("/etc/smartbin/smartbin.yaml")
# A source checkout ships firmware_config/; an installed Pi has /etc/smartbin (see install.sh).
DEFAULT_CONFIG = next((path for path in (PACKAGE_ROOT / "firmware_config" / "smartbin.yaml", SYSTEM_CONFIG)
                       if path.is_file()), PACKAGE_ROOT / "firmware_config" / "smartbin.yaml")
CREDENTIAL_NAME = "mqtt_password"
INSTALLED_CONFIG_DIR = Path("/etc/smartbin")  # where install.sh keeps the config and the credential
PATTERN_WORDS = {TOPIC_SAFE: "one or more ASCII letters (a-z, A-Z), digits, - and _, nothing else",
                 TOPIC_TEXT: "must not be empty or hold # or + (MQTT wildcards) or a control character"}
UNION_MEMBER = re.compile(r"^(int|str|float|bool|none|tuple\[.*\]|list\[.*\]|dict\[.*\])$")


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


def tls_paths(tls: TlsConfig, config_path: str | os.PathLike | None = None) -> tuple[str | None, ...]:
    """``(ca_file, certfile, keyfile)`` resolved as ``resolve_path`` does, None where unset."""
    return tuple(str(resolve_path(value, config_path)) if value else None
                 for value in (tls.ca_file, tls.certfile, tls.keyfile))


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
    from edge.config_checks import cross_field_problems  # it reads this module's paths: imported late

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
        elif item["type"] == "string_pattern_mismatch" and item["ctx"]["pattern"] in PATTERN_WORDS:
            message = f"{PATTERN_WORDS[item['ctx']['pattern']]} (got {item['input']!r})"
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
        # A pip install from a URL has neither default: say where a config is looked for, and what to do.
        hint = (f" (no --config given, and there is neither a source checkout's firmware_config/smartbin.yaml "
                f"nor {SYSTEM_CONFIG}: pass --config FILE)" if Path(path) == DEFAULT_CONFIG else "")
        raise ConfigError([("config", f"file not found: {path}{hint}")]) from None
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
