"""mqtt_health: the link's log lines about its broker are said at once and then only now and then."""

from __future__ import annotations

import logging

import pytest

from edge.mqtt_health import SHORT_CONNECTIONS_BEFORE_HINT, UNREACHABLE_LOG_INTERVAL_S, LinkHealth


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_an_unreachable_broker_is_said_at_once_then_every_five_minutes(clock, caplog):
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1", clock)
    with caplog.at_level(logging.DEBUG, logger="edge.mqtt"):
        for _ in range(10):
            health.unreachable()
            clock.now += UNREACHABLE_LOG_INTERVAL_S / 10
        health.unreachable()
    said = warnings(caplog)
    assert len(said) == 2 and "mqtt.local:1883 unreachable (check mqtt.host, mqtt.port and mqtt.tls)" in said[0]


def test_after_a_connection_the_next_outage_is_said_at_once_again(clock, caplog):
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1", clock)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
        health.unreachable()
        health.connected()
        health.unreachable()
    assert len(warnings(caplog)) == 2


def twin_hints(clock, caplog, connection_lasts_s: float) -> list[str]:
    """The twin-client-id hints logged over a streak of connections that each last this long."""
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1", clock)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
        for _ in range(SHORT_CONNECTIONS_BEFORE_HINT + 2):
            health.connected()
            clock.now += connection_lasts_s
            health.disconnected("Unspecified error")
    return [line for line in warnings(caplog) if "keeps closing the connection" in line]


def test_a_broker_closing_short_connections_again_and_again_gets_the_twin_hint_once(clock, caplog):
    hints = twin_hints(clock, caplog, connection_lasts_s=1)
    assert len(hints) == 1 and "'smartbin-bin-1'" in hints[0]


def test_long_connections_lost_now_and_then_get_no_twin_hint(clock, caplog):
    assert not twin_hints(clock, caplog, connection_lasts_s=3600)


def test_a_lasting_pump_error_is_logged_once_a_minute_and_a_new_one_at_once(clock, caplog):
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1", clock)
    with caplog.at_level(logging.ERROR, logger="edge.mqtt"):
        for _ in range(121):  # half a second apart, for a minute
            try:
                raise OSError(28, "No space left on device")
            except OSError as err:
                health.pump_error(err)
            clock.now += 0.5
        try:
            raise ValueError("something else")
        except ValueError as err:
            health.pump_error(err)
    assert len(caplog.records) == 3  # the first, one a minute later, and the new kind


def test_after_the_twin_hint_the_streaks_disconnections_are_quiet_until_five_minutes_pass(clock, caplog):
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1", clock)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
        for _ in range(SHORT_CONNECTIONS_BEFORE_HINT + 100):  # a twin bin: closed every second
            health.connected()
            clock.now += 1
            health.disconnected("Unspecified error")
        clock.now += UNREACHABLE_LOG_INTERVAL_S
        health.connected()
        health.disconnected("Unspecified error")
    said = warnings(caplog)
    assert len([line for line in said if "disconnected" in line]) == SHORT_CONNECTIONS_BEFORE_HINT + 1
    assert len([line for line in said if "keeps closing" in line]) == 2  # the hint, and once more 5 min later


def test_a_refusing_broker_is_said_once_then_every_five_minutes_and_a_new_reason_at_once(clock, caplog):
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1", clock)
    with caplog.at_level(logging.WARNING, logger="edge.mqtt"):
        for _ in range(11):  # every 30 s for five minutes
            health.refused("Not authorized")
            clock.now += 30
        health.refused("Bad user name or password")
    said = warnings(caplog)
    assert len(said) == 3 and "refused the connection: Not authorized" in said[0]
    assert "Bad user name or password" in said[2]
