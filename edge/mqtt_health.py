"""What the bin's MQTT link tells the log about its broker: said once, repeated only now and then.

A typo in ``mqtt.host`` fails every few seconds for as long as the bin runs, a full disk makes the
outbox pump fail every half second, and an MQTT 3.1.1 broker closes a connection without saying
why. An operator reading the journal must see each at once, without thousands of lines of it.
Plain data and the clock: ``edge.mqtt`` calls these from paho's callbacks and its pump thread.

Usage:
    health = LinkHealth("mqtt.local:1883", "smartbin-bin-1")
    health.connected(); health.disconnected("Unspecified error"); health.unreachable()
"""

from __future__ import annotations

import logging
import time
from typing import Callable

log = logging.getLogger("edge.mqtt")

PUMP_ERROR_LOG_INTERVAL_S = 60.0
UNREACHABLE_LOG_INTERVAL_S = 300.0  # an unreachable broker is said once, then every 5 minutes while it lasts
SHORT_CONNECTION_S, SHORT_CONNECTIONS_BEFORE_HINT = 5.0, 3  # a broker closing us again and again: say why it may


class LinkHealth:
    """Log lines about one broker connection, throttled.

    Args:
        address: ``host:port``, as the log names the broker.
        client_id: the MQTT client id (two bins sharing one make the broker close both in turn).
        clock: monotonic seconds (a test's fake clock).
    """

    def __init__(self, address: str, client_id: str, clock: Callable[[], float] = time.monotonic):
        self.address, self.client_id, self._clock = address, client_id, clock
        self._unreachable_said_at: float | None = None  # None while the broker answers
        self._connected_at, self._short_connections = 0.0, 0
        self._pump_error, self._pump_error_at = "", 0.0
        self._streak_said_at = 0.0
        self._refusal, self._refusal_said_at = "", 0.0

    def connected(self) -> None:
        self._unreachable_said_at = None
        self._refusal = ""
        self._connected_at = self._clock()

    def disconnected(self, reason: object) -> None:
        """An established connection was lost (not by our own stop)."""
        now = self._clock()
        self._short_connections = self._short_connections + 1 if now - self._connected_at < SHORT_CONNECTION_S else 0
        if self._short_connections > SHORT_CONNECTIONS_BEFORE_HINT and \
                now - self._streak_said_at < UNREACHABLE_LOG_INTERVAL_S:
            # A twin bin makes the broker close us every second or so: the hint below said why.
            log.debug("MQTT disconnected from %s again (%s)", self.address, reason)
            return
        log.warning("MQTT disconnected from %s (%s); events wait in the outbox", self.address, reason)
        if self._short_connections >= SHORT_CONNECTIONS_BEFORE_HINT:  # once per streak, then every 5 minutes
            self._streak_said_at = now
            # MQTT 3.1.1 brokers close a connection without saying why; the usual reason is a twin.
            log.warning("MQTT broker %s keeps closing the connection within seconds: is another client "
                        "connected with the client id %r (two bins with the same device.id or "
                        "mqtt.client_id)?", self.address, self.client_id)

    def refused(self, reason: object) -> None:
        """The broker answered a connection attempt with a refusal (bad credentials, ...)."""
        now = self._clock()
        if str(reason) != self._refusal or now - self._refusal_said_at >= UNREACHABLE_LOG_INTERVAL_S:
            self._refusal, self._refusal_said_at = str(reason), now
            log.warning("MQTT broker %s refused the connection: %s (retrying with back-off; said again every "
                        "5 minutes while it lasts)", self.address, reason)
        else:
            log.debug("MQTT broker %s refused the connection again: %s", self.address, reason)

    def unreachable(self) -> None:
        """A connection attempt failed (wrong host or port, TLS against a plain port, broker down)."""
        now = self._clock()
        if self._unreachable_said_at is None or now - self._unreachable_said_at >= UNREACHABLE_LOG_INTERVAL_S:
            self._unreachable_said_at = now
            log.warning("MQTT broker %s unreachable (check mqtt.host, mqtt.port and mqtt.tls); retrying with "
                        "back-off, events wait in the outbox", self.address)
        else:
            log.debug("MQTT broker %s still unreachable", self.address)

    def pump_error(self, err: Exception) -> None:
        """The outbox pump failed; a lasting fault's traceback is logged once a minute."""
        now = self._clock()
        if repr(err) != self._pump_error or now - self._pump_error_at >= PUMP_ERROR_LOG_INTERVAL_S:
            self._pump_error, self._pump_error_at = repr(err), now
            log.exception("MQTT outbox pump error (repeats are logged once a minute)")
