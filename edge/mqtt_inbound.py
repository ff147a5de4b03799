"""What the bin does with each MQTT message it receives: Home Assistant's status, its own retained
discovery configs, and ``cmd/<name>`` commands. Plain data in (topic, payload, retain flag): the
MQTT link (``edge.mqtt``, the only module that touches paho) hands every message here.

Usage:
    inbound = InboundRouter("smartbin/bin-1/cmd/", "homeassistant/status", on_command=handle,
                            on_home_assistant_online=restate_everything)
    inbound.handle("smartbin/bin-1/cmd/reset_counts", b"{}", retain=False)   # -> handle("reset_counts", b"{}")
"""

from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, bytes], None]


class InboundRouter:
    """Routes received messages; a failing handler is logged, never raised into paho's network thread.

    Args:
        command_prefix: ``<prefix>/<device_id>/cmd/``.
        home_assistant_status_topic: where Home Assistant says ``online`` after a restart.
        on_command: called with ``(name, payload)`` for each live, non-empty ``cmd/<name>`` message.
        on_home_assistant_online: called when Home Assistant comes back (it forgot non-retained state).
        discovery: an ``edge.discovery.DiscoveryRegistry`` that claims its own retained configs, or None.
    """

    def __init__(self, command_prefix: str, home_assistant_status_topic: str, on_command: CommandHandler | None,
                 on_home_assistant_online: Callable[[], None], discovery=None):
        self.command_prefix = command_prefix
        self.home_assistant_status_topic = home_assistant_status_topic
        self.on_command = on_command
        self.on_home_assistant_online = on_home_assistant_online
        self.discovery = discovery
        self._retained_commands_warned: set[str] = set()

    def handle(self, topic: str, payload: bytes, retain: bool) -> None:
        """Acts on one received message (see the class docstring)."""
        try:
            self._route(topic, payload, retain)
        except Exception:  # noqa: BLE001 -- an exception here would kill paho's network thread
            log.exception("MQTT message on %s could not be handled", topic)

    def _route(self, topic: str, payload: bytes, retain: bool) -> None:
        if topic == self.home_assistant_status_topic:
            if payload == b"online":
                self.on_home_assistant_online()
            return
        if self.discovery is not None and self.discovery.handle(topic, payload, retain):
            return
        if not topic.startswith(self.command_prefix):
            return
        name = topic[len(self.command_prefix):]
        if name == "result" or self.on_command is None:
            return  # our own replies come back through the cmd/+ subscription
        if not payload:
            # An empty message is how MQTT clears a retained one (``mosquitto_pub -r -n``, the fix the
            # warning below gives); the broker hands it to subscribers live. It is not a command: it
            # runs nothing and gets no reply (``{}`` runs a command without options).
            log.info("ignoring the empty message on %s: it clears a retained command, it is not one", topic)
            return
        if retain:
            # A retained command would run again after every reconnect and restart (zeroing the
            # counts, moving the flap); commands act once, so only live messages are obeyed.
            if topic not in self._retained_commands_warned:
                self._retained_commands_warned.add(topic)
                log.warning("ignoring the retained command on %s: commands must be published without retain "
                            "(clear it with: mosquitto_pub -r -n -t %s)", topic, topic)
            return
        try:
            self.on_command(name, payload)
        except Exception:  # noqa: BLE001 -- one failing command must not stop the others
            log.exception("command handler failed for %s", topic)
