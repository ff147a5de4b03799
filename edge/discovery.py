"""This bin's Home Assistant discovery configs on the broker: publish them, clear the ones that are gone.

A new model with other labels must not leave its predecessor's label sensors behind in Home
Assistant: an empty retained config removes an entity. Entities this process never published (a
bin renamed in the config, then restarted) are found by subscribing to this bin's discovery
topics: the broker hands their retained configs over once after each connect, and those the
current configuration lacks are cleared. Works through a ``publish`` callable and a topic matcher
(paho's, passed in by ``edge.mqtt``), so the MQTT library stays in that one module.

Usage:
    registry = DiscoveryRegistry(provider, "bin-1", publish=retained_publish, matches=topic_matches_sub)
    registry.publish_all()                        # after connecting, on HA's birth, after reload_model
    subscriptions = registry.patterns()           # this bin's discovery topics, whoever published them
    if registry.handle(topic, payload, retain):   # a message on one of them: dealt with here
        return
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from edge import hass

log = logging.getLogger(__name__)


class DiscoveryRegistry:
    """The discovery configs this process published, and the clearing of leftovers.

    Args:
        provider: returns the ``(topic, config)`` pairs to publish now.
        device_id: this bin's id (its discovery configs name it as their device).
        publish: ``publish(topic, payload)`` sends a retained QoS 1 message.
        matches: ``matches(pattern, topic)``, MQTT wildcard matching.
    """

    def __init__(self, provider: Callable[[], Any], device_id: str, publish: Callable[[str, bytes | str], Any],
                 matches: Callable[[str, str], bool]):
        self.provider = provider
        self._publish = publish
        self._matches = matches
        self._topics: set[str] = set()  # published by this process, to clear when they go
        self._patterns: set[str] = set()  # this bin's discovery topics, whoever published them
        # publish_all runs on paho's thread (connect, HA birth) and on the daemon's (reload_model):
        # without the lock, a reconnect racing a reload could record the old model's topics last and
        # then clear the new model's entities as leftovers.
        self._lock = threading.RLock()
        self._device_identifier = hass.device_identifier(device_id)
        self._neighbours_warned: set[str] = set()  # other bins seen on this bin's discovery topics

    def publish_all(self) -> None:
        """Publishes the discovery configs (retained) and clears those of entities that are gone."""
        with self._lock:
            messages = list(self.provider())
            current = {topic for topic, _ in messages}
            for topic in sorted(self._topics - current):
                self._publish(topic, b"")
            for topic, config in messages:
                self._publish(topic, json.dumps(config, sort_keys=True))
            self._topics = current
            self._patterns = {discovery_pattern(topic) for topic in current}

    def patterns(self) -> list[str]:
        """The subscriptions that show this bin's discovery configs, sorted."""
        with self._lock:
            return sorted(self._patterns)

    def handle(self, topic: str, payload: bytes, retain: bool) -> bool:
        """True when the message is on one of this bin's discovery topics (and so dealt with here).

        A retained config of this bin that the current configuration lacks is cleared. Live
        echoes of our own publications are not flagged retained, and empty payloads are
        deletions: both are ignored. A config that belongs to another device is left alone and
        reported instead.
        """
        with self._lock:
            if not any(self._matches(pattern, topic) for pattern in self._patterns):
                return False
            if not payload:
                return True
            owner = hass.owner_of(payload)
            if owner != self._device_identifier:
                self._warn_about_neighbour(owner, topic)
                return True
            if retain and topic not in self._topics:
                log.info("clearing Home Assistant entity %s (no longer in this bin's configuration)", topic)
                self._publish(topic, b"")
        return True

    def _warn_about_neighbour(self, owner: str | None, topic: str) -> None:
        if owner is None or owner in self._neighbours_warned:
            return  # not a smartbin config: somebody else's business
        self._neighbours_warned.add(owner)
        log.warning("Home Assistant: %s belongs to another device (%s) whose id gives the same node id as "
                    "this bin's (%s): the two overwrite each other's entities. Give the bins ids that differ "
                    "in more than upper/lower case, '-' and '_'", topic, owner, self._device_identifier)


def discovery_pattern(topic: str) -> str:
    """``<prefix>/<component>/<node>/<object>/config`` -> ``<prefix>/+/<node>/+/config``."""
    parts = topic.split("/")
    if len(parts) < 5:
        return topic
    return "/".join(parts[:-4] + ["+", parts[-3], "+", "config"])
