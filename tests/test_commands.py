"""Remote command schemas: every malformed input is a one-line CommandError; dispatch never raises."""

from __future__ import annotations

import pytest

from edge.commands import (MAX_PAYLOAD_BYTES, FlapCommand, ReloadModel, ResetCounts, dispatch, parse_command,
                           request_id_of, result)
from edge.errors import CommandError


def test_valid_commands_parse_into_their_models():
    assert parse_command("reset_counts", b"") == ResetCounts()
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
])
def test_malformed_commands_are_rejected_with_a_reason(name, payload, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_command(name, payload)


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
