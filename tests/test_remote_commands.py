"""The daemon's command intake (``edge.remote_commands``): every malformed payload gets exactly one
``ok: false`` reply and no traceback; an empty message (the MQTT way to clear a retained command)
runs nothing. Unit tests on a stand-in daemon, then the same over a real mosquitto broker."""

from __future__ import annotations

import logging
import queue
import threading
from types import SimpleNamespace

import pytest

from edge.mqtt_inbound import InboundRouter
from edge.remote_commands import RemoteCommands
from tests.mqtt_helpers import ROOT, Listener, event, make_link, retained

pytestmark = pytest.mark.timeout(60)

# Too deep (the case that went unanswered), too big, not JSON, not UTF-8, not an object, blank.
MALFORMED = [
    ("reset_counts", b"[" * 3000, "payload is nested too deeply (over 32 levels)"),
    ("flap", b"[" * 3000, "payload is nested too deeply (over 32 levels)"),
    ("reset_counts", b"[" * 100_000, "payload of 100000 bytes exceeds the 4096-byte limit"),
    ("flap", b"[" * 100_000, "payload of 100000 bytes exceeds the 4096-byte limit"),
    ("flap", b"{oops", "payload is not valid JSON"),
    ("reset_counts", b"\xff\xfe", "payload is not valid JSON"),
    ("flap", b"[1, 2]", "payload must be a JSON object"),
    ("reset_counts", b" ", "payload is empty"),
    ("flap", b'{"bin": "glass", "bin": "paper"}', "payload is not valid JSON: the key 'bin' appears twice"),
]


class StandIn(RemoteCommands):
    """The parts of ``Daemon`` the command mixin uses, with a recording link and a store that counts resets."""

    def __init__(self, store=None, link=None, queue_size: int = 32):
        self._commands = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self.recorder = SimpleNamespace(wait=lambda: None)
        self.replies: list[dict] = []
        self.resets = 0
        self.store = store or SimpleNamespace(reset_counts=self._count_reset)
        self.link = link or SimpleNamespace(publish_result=self.replies.append, wake=lambda **kw: None)

    def _count_reset(self):
        self.resets += 1
        return {"total": 0}


def _errors(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("name, payload, error", MALFORMED,
                         ids=[f"{name}-{error.split(':')[0]}" for name, _, error in MALFORMED])
def test_each_malformed_payload_gets_exactly_one_error_reply_and_no_traceback(name, payload, error, caplog):
    bin_ = StandIn()
    inbound = InboundRouter(f"{ROOT}/cmd/", "homeassistant/status", bin_._on_command, lambda: None)
    with caplog.at_level(logging.DEBUG):
        inbound.handle(f"{ROOT}/cmd/{name}", payload, retain=False)  # what paho's thread calls
        bin_._run_commands()
    assert len(bin_.replies) == 1
    reply = bin_.replies[0]
    assert reply["command"] == name and reply["ok"] is False and reply["error"].startswith(error)
    assert "request_id" not in reply
    assert bin_._commands.empty() and bin_.resets == 0
    assert _errors(caplog) == []


def test_an_error_reply_still_echoes_a_readable_request_id():
    bin_ = StandIn()
    bin_._on_command("reset_counts", b'{"request_id": "r-9", "force": true}')
    assert bin_.replies == [{"command": "reset_counts", "ok": False, "error": "force: unknown key",
                             "request_id": "r-9"}]


def test_a_payload_with_a_key_written_twice_is_refused_with_its_request_id():
    bin_ = StandIn()
    bin_._on_command("flap", b'{"request_id": "r-2", "bin": "glass", "bin": "paper"}')
    assert bin_.replies == [{"command": "flap", "ok": False, "request_id": "r-2",
                             "error": "payload is not valid JSON: the key 'bin' appears twice"}]


def test_a_request_id_javascript_cannot_hold_exactly_is_refused_not_echoed_changed():
    bin_ = StandIn()
    bin_._on_command("reset_counts", b'{"request_id": 123456789012345678901234567890}')
    assert bin_.replies == [{"command": "reset_counts", "ok": False, "error": "request_id: an integer beyond 2**53 "
                             "loses digits in JavaScript: send it as a string"}]  # not echoed either
    assert bin_._commands.empty()


def test_an_empty_message_runs_nothing_and_gets_no_reply(caplog):
    bin_ = StandIn()
    inbound = InboundRouter(f"{ROOT}/cmd/", "homeassistant/status", bin_._on_command, lambda: None)
    with caplog.at_level(logging.DEBUG):
        inbound.handle(f"{ROOT}/cmd/reset_counts", b"", retain=False)
        bin_._run_commands()
    assert bin_.resets == 0 and bin_.replies == [] and bin_._commands.empty()
    assert _errors(caplog) == []
    inbound.handle(f"{ROOT}/cmd/reset_counts", b"{}", retain=False)  # {} is how to run it
    bin_._run_commands()
    assert bin_.resets == 1 and bin_.replies == [{"command": "reset_counts", "ok": True, "counts": {"total": 0}}]


def test_a_full_queue_is_answered_busy_with_the_commands_request_id():
    bin_ = StandIn(queue_size=1)
    bin_._on_command("reset_counts", b'{"request_id": 1}')
    bin_._on_command("reset_counts", b'{"request_id": 2}')
    assert bin_.replies == [{"command": "reset_counts", "ok": False, "error": "busy: too many queued commands",
                             "request_id": 2}]
    bin_._run_commands()
    assert bin_.resets == 1 and bin_.replies[-1]["request_id"] == 1


def test_commands_run_one_per_frame_and_at_most_two_flap_moves_wait():
    bin_ = StandIn()
    bin_._flap_command = lambda command: {"bin": command.bin}
    for number in range(4):
        bin_._on_command("flap", f'{{"bin": "glass", "request_id": {number}}}'.encode())
    assert bin_.replies == [{"command": "flap", "ok": False, "error": "busy: 2 flap commands wait already",
                             "request_id": number} for number in (2, 3)]
    bin_._on_command("reset_counts", b"{}")  # other commands still queue behind them
    bin_._run_commands()  # the loop's turn between two frames: one command
    assert [reply["request_id"] for reply in bin_.replies[2:]] == [0] and bin_._commands.qsize() == 2


def test_commands_still_waiting_at_a_stop_are_answered_and_never_run():
    bin_ = StandIn()
    bin_._on_command("reset_counts", b'{"request_id": "r-1"}')
    bin_._stop.set()
    bin_._run_commands()  # a frame that came in just as the stop began
    bin_._refuse_waiting_commands()
    assert bin_.resets == 0
    assert bin_.replies == [{"command": "reset_counts", "ok": False, "error": "the bin is stopping",
                             "request_id": "r-1"}]


def test_over_a_real_broker_clearing_a_retained_reset_keeps_the_counts_and_bad_payloads_are_answered(
        tmp_path, mosquitto, caplog):
    bin_ = StandIn()
    link, store = make_link(tmp_path, mosquitto, on_command=bin_._on_command)
    bin_.store, bin_.link = store, link
    done = threading.Event()

    def sorting_loop():  # commands run between frames, on the loop's thread
        while not done.is_set():
            bin_._run_commands()
            done.wait(0.01)

    loop = threading.Thread(target=sorting_loop, daemon=True)
    topic = f"{ROOT}/cmd/reset_counts"
    with caplog.at_level(logging.INFO):
        for i in range(2):
            store.record_item(event(i))
        link.start()
        loop.start()
        try:
            assert link.wait_connected(10)  # connected means subscribed
            with Listener(mosquitto.port, f"{ROOT}/cmd/result") as operator:
                # The mistake: a retained reset. It arrives live, so it runs once.
                operator.publish(topic, b'{"request_id": "first"}', retain=True)
                operator.wait_for(lambda: operator.on(f"{ROOT}/cmd/result"), what="the reset's reply")
                for i in range(2, 5):
                    store.record_item(event(i))
                # The fix the daemon's warning gives: `mosquitto_pub -r -n -t <topic>`.
                operator.publish(topic, b"", retain=True)
                for name, payload, _ in MALFORMED:
                    operator.publish(f"{ROOT}/cmd/{name}", payload)
                operator.publish(topic, b'{"request_id": "last", "force": 1}')  # answered after all the others
                operator.wait_for(lambda: any(r.get("request_id") == "last"
                                              for r in operator.payloads(f"{ROOT}/cmd/result")), what="last reply")
                replies = operator.payloads(f"{ROOT}/cmd/result")
        finally:
            done.set()
            loop.join(5)
            link.stop()
    first, *errors, last = replies
    assert first["ok"] is True and first["request_id"] == "first"
    assert [(r["command"], r["ok"], r["error"].split(":")[0]) for r in errors] == [
        (name, False, error.split(":")[0]) for name, _, error in MALFORMED]
    assert last == {"command": "reset_counts", "ok": False, "error": "force: unknown key", "request_id": "last"}
    since_reset = store.counts()["since_reset"]
    assert since_reset["total"] == 3, "the empty message must not reset the counts a second time"
    assert since_reset["reset_at"] == first["counts"]["since_reset"]["reset_at"]
    assert retained(mosquitto.port, topic, timeout=0.5) is None, "the retained command is cleared"
    assert f"ignoring the empty message on {topic}" in caplog.text
    assert _errors(caplog) == []
