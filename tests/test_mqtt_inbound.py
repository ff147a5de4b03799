"""mqtt_inbound: which received message reaches which handler; plain data, no broker."""

from __future__ import annotations

import logging

from edge.mqtt_inbound import InboundRouter

PREFIX = "smartbin/bin-1/cmd/"


class Recorder:
    def __init__(self):
        self.commands, self.home_assistant_online = [], 0

    def command(self, name, payload):
        self.commands.append((name, payload))

    def online(self):
        self.home_assistant_online += 1


def router(recorder, discovery=None):
    return InboundRouter(PREFIX, "homeassistant/status", recorder.command, recorder.online, discovery)


def test_a_live_command_reaches_the_handler_by_name():
    seen = Recorder()
    router(seen).handle(PREFIX + "reset_counts", b'{"request_id": "1"}', retain=False)
    assert seen.commands == [("reset_counts", b'{"request_id": "1"}')]


def test_our_own_replies_and_other_topics_are_ignored():
    seen = Recorder()
    inbound = router(seen)
    inbound.handle(PREFIX + "result", b"{}", retain=False)
    inbound.handle("smartbin/bin-2/cmd/reset_counts", b"{}", retain=False)
    assert seen.commands == []


def test_a_retained_command_is_ignored_with_one_warning_per_topic(caplog):
    seen = Recorder()
    inbound = router(seen)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            inbound.handle(PREFIX + "reset_counts", b"{}", retain=True)
    assert seen.commands == []
    assert [record.message for record in caplog.records] == [
        f"ignoring the retained command on {PREFIX}reset_counts: commands must be published without retain "
        f"(clear it with: mosquitto_pub -r -n -t {PREFIX}reset_counts)"]


def test_home_assistant_coming_online_restates_everything_and_other_statuses_do_not():
    seen = Recorder()
    inbound = router(seen)
    inbound.handle("homeassistant/status", b"offline", retain=False)
    inbound.handle("homeassistant/status", b"online", retain=True)
    assert seen.home_assistant_online == 1 and seen.commands == []


def test_discovery_claims_its_own_retained_configs_first():
    class Discovery:
        def __init__(self):
            self.seen = []

        def handle(self, topic, payload, retain):
            self.seen.append(topic)
            return topic.startswith("homeassistant/")

    seen, discovery = Recorder(), Discovery()
    inbound = router(seen, discovery)
    inbound.handle("homeassistant/sensor/bin-1/total/config", b"{}", retain=True)
    inbound.handle(PREFIX + "move_flap", b"{}", retain=False)
    assert discovery.seen == ["homeassistant/sensor/bin-1/total/config", PREFIX + "move_flap"]
    assert seen.commands == [("move_flap", b"{}")]


def test_a_failing_handler_is_logged_not_raised_into_the_network_thread(caplog):
    def broken(name, payload):
        raise RuntimeError("boom")

    inbound = InboundRouter(PREFIX, "homeassistant/status", broken, lambda: 1 / 0)
    with caplog.at_level(logging.ERROR):
        inbound.handle(PREFIX + "reset_counts", b"{}", retain=False)
        inbound.handle("homeassistant/status", b"online", retain=False)
    assert [record.message for record in caplog.records] == [
        f"command handler failed for {PREFIX}reset_counts", "MQTT message on homeassistant/status could not be handled"]


def test_an_empty_message_clears_a_retained_command_and_runs_nothing(caplog):
    # `mosquitto_pub -r -n -t .../cmd/reset_counts`, the fix the warning above gives, reaches the
    # subscribed bin live (retain flag off, empty payload): it must not reset the counts again.
    seen = Recorder()
    inbound = router(seen)
    with caplog.at_level(logging.DEBUG, logger="edge.mqtt_inbound"):
        inbound.handle(PREFIX + "reset_counts", b"", retain=False)
        inbound.handle(PREFIX + "flap", b"", retain=True)  # retain-as-published brokers: still not a command
    assert seen.commands == []
    assert [(record.levelname, record.message) for record in caplog.records] == [
        ("INFO", f"ignoring the empty message on {PREFIX}reset_counts: it clears a retained command, it is not one"),
        ("INFO", f"ignoring the empty message on {PREFIX}flap: it clears a retained command, it is not one")]


def test_a_blank_but_not_empty_payload_is_a_command_and_gets_its_error_reply_downstream():
    seen = Recorder()
    router(seen).handle(PREFIX + "reset_counts", b" ", retain=False)
    assert seen.commands == [("reset_counts", b" ")]
