"""Remote command schemas: every malformed input is a one-line CommandError; dispatch never raises."""

from __future__ import annotations

import json
import re

import pytest

from edge.commands import (MAX_PAYLOAD_BYTES, FlapCommand, ReloadModel, ResetCounts, dispatch, parse_command,
                           request_id_of, result)
from edge.errors import CommandError


def test_valid_commands_parse_into_their_models():
    assert parse_command("reset_counts", b"{}") == ResetCounts()
    assert parse_command("reload_model", b'{"path": "models/x", "request_id": "r1"}') == ReloadModel(
        path="models/x", request_id="r1")
    assert parse_command("flap", '{"bin": "glass"}').bin == "glass"


@pytest.mark.parametrize("name, payload, message", [
    ("explode", b"{}", "unknown command 'explode'"),
    ("flap", b"{not json", "not valid JSON"),
    ("flap", b"\xff\xfe", "not valid JSON"),
    ("flap", b"[1, 2]", "must be a JSON object"),
    ("flap", b'{"bin": 3}', "bin: Input should be a valid string"),
    ("flap", b"{}", "bin: Field required"),
    ("reset_counts", b'{"force": true}', "force: unknown key"),
    ("reset_counts", b'{"name": "flap"}', "name: unknown key"),
    ("reload_model", b'{"path": ""}', "path:"),
    ("flap", b'{"bin": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}', "exceeds the 4096-byte limit"),
    ("flap", b"[" * 4000, "nested too deeply"),
    ("reset_counts", b"[" * 3000, "nested too deeply"),
    ("reset_counts", b'{"request_id": ' + b"[" * 3000, "nested too deeply"),
    # Well-formed but deeper than any command: refused by depth on every Python (3.13's json parses it).
    ("reset_counts", b"[" * 1500 + b"]" * 1500, "nested too deeply"),
    ("flap", b'{"bin": ' + b"[" * 33 + b"]" * 33 + b"}", "nested too deeply"),
    ("reset_counts", b"[" * 100_000, "payload of 100000 bytes exceeds the 4096-byte limit"),
    ("flap", b"\xed\xa0\x80{}", "not valid JSON"),
    ("flap", "\ud800", "not valid JSON"),  # a str that is no UTF-8 at all
    ("flap", b'"glass"', "must be a JSON object"),
    ("flap", b"null", "must be a JSON object"),
    # Empty is no longer {}: an empty message clears a retained command (mqtt_inbound drops it first).
    ("reset_counts", b"", "payload is empty: send a JSON object ({} for a command without options)"),
    ("reset_counts", None, "payload is empty"),
    ("reset_counts", b" \r\n", "payload is empty"),
], ids=lambda value: repr(value)[:40] if isinstance(value, (bytes, str)) else None)
def test_malformed_commands_are_rejected_with_a_reason(name, payload, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        parse_command(name, payload)


def test_brackets_inside_strings_do_not_count_as_nesting():
    name = "[" * 40 + '"' + "{" * 20  # a bin name may be any text: only real arrays and objects nest
    assert parse_command("flap", json.dumps({"bin": name})).bin == name


def test_dispatch_turns_handler_results_and_failures_into_replies():
    handlers = {"flap": lambda c: {"angle": 20.0}, "reset_counts": lambda c: 1 / 0}
    assert dispatch(FlapCommand(bin="glass", request_id=7), handlers) == {
        "command": "flap", "ok": True, "request_id": 7, "angle": 20.0}
    assert dispatch(ResetCounts(), handlers) == {"command": "reset_counts", "ok": False, "error": "division by zero"}
    assert dispatch(ReloadModel(), handlers)["error"] == "not supported by this daemon"


def test_a_boolean_request_id_is_refused_not_echoed_as_1():
    with pytest.raises(CommandError, match="request_id"):
        parse_command("reset_counts", b'{"request_id": true}')
    assert request_id_of(b'{"request_id": true}') is None


def test_error_replies_still_carry_the_request_id_when_it_can_be_read():
    assert request_id_of(b'{"request_id": "abc", "bin": 5}') == "abc"
    assert request_id_of(b"{broken") is None
    assert result("flap", False, "bad", request_id_of(b'{"request_id": 3}')) == {
        "command": "flap", "ok": False, "error": "bad", "request_id": 3}


@pytest.mark.parametrize("payload", [
    b"[" * 3000, b"[" * 100_000, b"{" * 3000, b'{"request_id": "a", "x": ' + b"[" * 3000,
    b'{"request_id": "a"}' + b" " * MAX_PAYLOAD_BYTES, b"{broken", b"\xff\xfe", b"", None, " ", "\ud800",
    b"[1]", b'"request_id"', b'{"request_id": {"nested": 1}}', b'{"request_id": "' + b"r" * 129 + b'"}',
], ids=lambda value: f"{repr(value)[:24]}-{len(value or '')}")
def test_request_id_of_never_raises_and_applies_the_same_limits(payload):
    # It runs on the error path, after parse_command refused the payload: a second, unguarded parse
    # raised RecursionError there, and the command got no reply at all.
    assert request_id_of(payload) is None


def test_every_malformed_payload_gets_a_one_line_reason_and_its_request_id_when_readable():
    for payload in [b"[" * 3000, b"[" * 100_000, b"{oops", b"[]", b"", b'{"request_id": "r7", "force": 1}']:
        with pytest.raises(CommandError) as caught:
            parse_command("reset_counts", payload)
        reply = result("reset_counts", False, str(caught.value), request_id_of(payload))
        assert reply["ok"] is False and reply["error"] and "\n" not in reply["error"]
    assert reply["request_id"] == "r7"
