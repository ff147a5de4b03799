"""Remote commands on plain data: parse and validate a payload, run it, shape the reply.

Commands arrive on ``<prefix>/<device_id>/cmd/<name>`` as small JSON objects (``{}`` for a
command without options). An empty message is not a command: it is how MQTT clears a retained
message, and ``edge.mqtt_inbound`` drops it before it gets here (``parse_command`` refuses it too).
Parsing never raises past ``parse_command``: every malformed, unknown, oversized or too deeply
nested message becomes a ``CommandError`` that the caller turns into an error reply on
``cmd/result``, and ``request_id_of`` (for that reply) never raises at all. Running is
``dispatch``: a handler per command name, any exception becomes an error reply, so a bad command
never stops the sorting loop.

Usage:
    try:
        command = parse_command("flap", b'{"bin": "glass"}')
        reply = dispatch(command, {"flap": lambda c: flap.move_to(c.bin)})
    except CommandError as err:
        reply = result("flap", ok=False, error=str(err))
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from edge.errors import CommandError

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
MAX_DEPTH = 32  # a command is one flat object: this leaves room, and keeps json far from its recursion limit
JS_SAFE_INT = 2**53 - 1


class Command(BaseModel):
    """Base of every command: unknown keys are errors; ``request_id`` is echoed in the reply."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field("", exclude=True)
    # Strict: pydantic would otherwise take ``true`` as 1 and echo a value the caller never sent.
    request_id: StrictStr | StrictInt | None = Field(None, description="Echoed in the reply so callers can match it.")

    @field_validator("request_id")
    @classmethod
    def _echoable(cls, value: str | int | None) -> str | int | None:
        if isinstance(value, int) and abs(value) > JS_SAFE_INT:
            # Node-RED and Home Assistant's frontend read the echo as a double: the caller would not match it.
            raise ValueError("an integer beyond 2**53 loses digits in JavaScript: send it as a string")
        if isinstance(value, str) and len(value) > 128:
            raise ValueError("at most 128 characters")
        return value


class ResetCounts(Command):
    """Zero the since-reset counts (since-install counts are kept)."""

    name: Literal["reset_counts"] = Field("reset_counts", exclude=True)


class ReloadModel(Command):
    """Load a model bundle (the configured one when ``path`` is empty); the old one stays on failure."""

    name: Literal["reload_model"] = Field("reload_model", exclude=True)
    path: str | None = Field(None, min_length=1, max_length=1024, description="Bundle folder on the bin.")


class FlapCommand(Command):
    """Move the flap to a bin and back (calibration)."""

    name: Literal["flap"] = Field("flap", exclude=True)
    bin: str = Field(..., min_length=1, max_length=64, description="Bin name, as in flap.angles.")


COMMANDS: dict[str, type[Command]] = {"reset_counts": ResetCounts, "reload_model": ReloadModel,
                                      "flap": FlapCommand}


def _load(payload: bytes | str | None, unique_keys: bool = True) -> Any:
    """The JSON value of a payload, with every limit checked before it is parsed.

    Raises:
        CommandError: empty, over ``MAX_PAYLOAD_BYTES``, not UTF-8, not JSON, or nested too deeply.
    """
    if payload is None:
        raw = b""
    elif isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")  # a lone surrogate then fails as "not valid JSON"
    else:
        raw = bytes(memoryview(payload))  # bytes, bytearray; not bytes(5), five zero bytes
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"payload of {len(raw)} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte limit")
    if not raw.strip():
        raise CommandError("payload is empty: send a JSON object ({} for a command without options)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CommandError(f"payload is not valid JSON: {err}") from None
    # Counted before parsing: Python 3.11's json gives up at about 1000 levels, 3.13's only at about
    # 10,000, so its RecursionError alone would answer "[[[[..." differently by version.
    if _nesting_depth(text) > MAX_DEPTH:
        raise CommandError(f"payload is nested too deeply (over {MAX_DEPTH} levels)")
    try:
        return json.loads(text, object_pairs_hook=_unique_keys if unique_keys else None)
    except ValueError as err:
        raise CommandError(f"payload is not valid JSON: {err}") from None


def _nesting_depth(text: str) -> int:
    """The deepest nesting of JSON arrays and objects in ``text``; brackets inside strings do not count.

    One pass (a regular expression for the strings would take quadratic time on a text of escaped quotes).

    Usage:
        _nesting_depth('{"bin": [1, {"a": "[["}]}')  # 3
    """
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # {"bin": "glass", "bin": "paper"} would silently move to paper: which one was meant?
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the key {key!r} appears twice")
        seen[key] = value
    return seen


def parse_command(name: str, payload: bytes | str | None) -> Command:
    """Validates a command name and its JSON payload.

    Raises:
        CommandError: unknown command, payload empty, too large, not JSON, nested too deeply, not an
            object, bad or unknown fields.
    """
    model = COMMANDS.get(name)
    if model is None:
        raise CommandError(f"unknown command {name[:64]!r} (known: {', '.join(sorted(COMMANDS))})")
    data = _load(payload)
    if not isinstance(data, dict):
        raise CommandError("payload must be a JSON object")
    if "name" in data:
        raise CommandError("name: unknown key (the command name is the topic)")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'payload'}: {_problem(e)}" for e in err.errors())
        raise CommandError(problems) from None


def _problem(error: dict[str, Any]) -> str:
    return "unknown key" if error["type"] == "extra_forbidden" else error["msg"].removeprefix("Value error, ")


def request_id_of(payload: bytes | str | None) -> str | int | None:
    """Best-effort ``request_id`` of a payload that failed validation, so even error replies can be
    matched; ``None`` when it cannot be read. Never raises: it runs on the error path, where the payload
    is already known to be bad (too large, too deep, not JSON), and applies the same limits."""
    try:
        data = _load(payload, unique_keys=False)  # {"request_id": 1, "bin": "a", "bin": "b"} still gets its id
        value = data.get("request_id") if isinstance(data, dict) else None
        ok = (isinstance(value, str) and len(value) <= 128
              or isinstance(value, int) and not isinstance(value, bool) and abs(value) <= JS_SAFE_INT)
    except Exception:  # noqa: BLE001 -- CommandError and anything unforeseen: the reply goes out without it
        return None
    return value if ok else None


def result(command: str, ok: bool, error: str | None = None, request_id: str | int | None = None,
           **details: Any) -> dict[str, Any]:
    """The JSON reply for ``cmd/result``: ``{command, ok, error?, request_id?, ...details}``."""
    reply: dict[str, Any] = {"command": command[:64], "ok": ok}
    if error is not None:
        reply["error"] = error[:500]
    if request_id is not None:
        reply["request_id"] = request_id
    reply.update(details)
    return reply


Handler = Callable[[Command], "dict[str, Any] | None"]


def dispatch(command: Command, handlers: dict[str, Handler]) -> dict[str, Any]:
    """Runs a validated command with its handler and returns the reply; never raises.

    A handler returns extra reply fields (or ``None``) and raises to report failure.
    """
    handler = handlers.get(command.name)
    if handler is None:
        return result(command.name, False, "not supported by this daemon", command.request_id)
    try:
        details = handler(command) or {}
    except Exception as err:  # noqa: BLE001 -- a remote command must never take the daemon down
        log.warning("command %s failed: %s", command.name, err)
        return result(command.name, False, str(err) or type(err).__name__, command.request_id)
    return result(command.name, True, None, command.request_id, **details)
