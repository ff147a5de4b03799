"""Home Assistant MQTT discovery: the retained config messages that make the bin appear in HA.

One message per entity on ``<discovery_prefix>/<component>/<node>/<key>/config`` (``node`` is
``object_id(device_id)``),
following HA's documented schema: ``unique_id``, a shared ``device`` block, an ``origin``,
and availability from the bin's own ``availability`` topic (whose ``stopped`` HA treats as
``offline`` through ``availability_template``). The caller publishes them retained after
connecting and again whenever Home Assistant's status topic says ``online``.

Usage:
    for topic, config in discovery_messages("bin-1", "smartbin/bin-1", labels, bins):
        client.publish(topic, json.dumps(config), qos=1, retain=True)
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import re
from typing import Any, Iterable, Mapping

from edge import __version__

log = logging.getLogger(__name__)

AVAILABILITY_TEMPLATE = "{{ 'online' if value == 'online' else 'offline' }}"


def object_id(text: str) -> str:
    """A name safe inside topics and entity ids: lower-case letters, digits and '_'."""
    return re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_") or "x"


def distinct_keys(names: Iterable[str], published: Mapping[str, str] | None = None) -> dict[str, str]:
    """An entity key per name, sorted by name: ``object_id(name)``, plus a short hash of the name
    where two names would give the same key ("Glass" and "glass", or two labels in non-Latin
    script, which both become "x"), so that neither entity silently overwrites the other. A name
    that already is its key ("glass") keeps it, so adding "Glass" later does not rename the entity
    "glass" had (its history in Home Assistant stays).

    ``published`` holds the keys this bin gave names before (its record, kept in the store): those
    names keep them, and no other name gets one of them, so a new model's "Trash" never takes over
    the entity that counted "trash", whichever of the two came first.
    """
    published = dict(published or {})
    keys = {name: published[name] for name in set(names) if name in published}
    taken = set(published.values())
    for name, key in _keys_among(set(names) - keys.keys()).items():
        keys[name] = _hashed(name, key) if key in taken else key
    return {name: keys[name] for name in sorted(keys)}


def recorded_keys(store, kind: str, names: Iterable[str]) -> dict[str, str]:
    """``distinct_keys(names)`` for ``kind`` ("labels", "bins"), honouring and extending the record of
    keys given before that ``store`` (``edge.store.Store``) keeps: a name keeps its key across model
    reloads and restarts, and no other name ever takes it."""
    from edge.errors import StoreError

    record = f"hass_{kind}_keys"
    try:
        published = json.loads(store.meta(record) or "{}")
    except ValueError:  # edited by hand: a new record
        published = {}
    if not isinstance(published, dict):
        published = {}
    keys = distinct_keys(names, published)
    if not keys.items() <= published.items():
        try:
            store.set_meta(record, json.dumps({**published, **keys}, sort_keys=True))
        except StoreError as err:  # the entities are right now; only a later change of names could drift
            log.warning("could not record the Home Assistant entity keys: %s", err)
    return keys


def _keyed(names: Iterable[str] | Mapping[str, str]) -> dict[str, str]:
    return dict(sorted(names.items())) if isinstance(names, Mapping) else distinct_keys(names)


def _keys_among(names: set[str]) -> dict[str, str]:
    keys = {name: object_id(name) for name in names}
    taken = collections.Counter(keys.values())
    return {name: key if taken[key] == 1 or name == key else _hashed(name, key) for name, key in keys.items()}


def _hashed(name: str, key: str) -> str:
    return f"{key}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"


def device_identifier(device_id: str) -> str:
    """The bin's identifier in Home Assistant's device registry (case and punctuation kept)."""
    return f"smartbin_{device_id}"


def owner_of(payload: bytes) -> str | None:
    """The smartbin device identifier a discovery config names, or None for anything else."""
    try:
        identifiers = json.loads(payload)["device"]["identifiers"]
    except (ValueError, TypeError, KeyError, RecursionError):  # anybody can publish anything here
        return None
    if not isinstance(identifiers, list):
        return None
    return next((i for i in identifiers if isinstance(i, str) and i.startswith("smartbin_")), None)


def device_block(device_id: str, model_name: str | None = None) -> dict[str, Any]:
    block = {"identifiers": [device_identifier(device_id)], "name": f"smartbin {device_id}",
             "manufacturer": "smartbin", "model": "smartbin waste sorter", "sw_version": __version__}
    if model_name:
        block["hw_version"] = f"model {model_name}"
    return block


def discovery_messages(device_id: str, topic_root: str, labels: Iterable[str] | Mapping[str, str],
                       bins: Iterable[str] | Mapping[str, str], discovery_prefix: str = "homeassistant",
                       model_name: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Every discovery config for this bin, as ``(topic, payload)`` pairs (publish them retained).

    Args:
        device_id: the bin's id (topic-safe).
        topic_root: ``<prefix>/<device_id>``, the bin's own topics.
        labels: the model's labels (one count sensor each), or a mapping of each to its entity key
            (``distinct_keys``); plain names get ``distinct_keys(labels)``.
        bins: the bin names (one count sensor each), or a mapping as for ``labels``.
        discovery_prefix: HA's discovery prefix.
        model_name: shown in the HA device page.
    """
    device = device_block(device_id, model_name)
    node = object_id(device_id)
    # last_item and stats are retained: after a Home Assistant restart these sensors show their value at once.
    counts, item, stats = f"{topic_root}/counts", f"{topic_root}/last_item", f"{topic_root}/stats"
    messages = []

    def add(component: str, key: str, config: dict[str, Any], available_always: bool = False) -> None:
        entity = f"smartbin_{node}_{key}"
        # default_entity_id (HA 2025.10+; older versions drop it): the entity id follows the key, not the
        # name, so it is predictable and two names with one key no longer take "_2" in arrival order.
        payload = {"unique_id": entity, "default_entity_id": f"{component}.{entity}", "device": device,
                   "origin": {"name": "smartbin", "sw_version": __version__}, **config}
        if not available_always:
            payload.update(availability_topic=f"{topic_root}/availability",
                           availability_template=AVAILABILITY_TEMPLATE,
                           payload_available="online", payload_not_available="offline")
        messages.append((f"{discovery_prefix}/{component}/{node}/{key}/config", payload))

    def count_sensor(key: str, name: str, template: str, icon: str = "mdi:counter") -> None:
        add("sensor", key, {"name": name, "state_topic": counts, "value_template": template,
                            "state_class": "total_increasing", "unit_of_measurement": "items", "icon": icon})

    count_sensor("total", "Items sorted", "{{ value_json.total }}", "mdi:delete-variant")
    count_sensor("total_since_reset", "Items since reset", "{{ value_json.since_reset.total }}",
                 "mdi:delete-variant")
    for bin_name, key in _keyed(bins).items():
        count_sensor(f"bin_{key}", f"Bin {bin_name}",
                     f"{{{{ value_json.bins.get({bin_name!r}, 0) }}}}", "mdi:delete")
        # What went into the bin since it was last emptied (and the counts reset): its fill level.
        count_sensor(f"since_reset_bin_{key}", f"Bin {bin_name} since reset",
                     f"{{{{ value_json.since_reset.bins.get({bin_name!r}, 0) }}}}", "mdi:delete-clock")
    add("sensor", "reset_at", {"name": "Counts reset at", "state_topic": counts, "device_class": "timestamp",
                               # An ISO time with its zone, which a timestamp sensor needs, in every HA version.
                               "value_template": "{{ value_json.since_reset.reset_at | "
                                                 "timestamp_custom('%Y-%m-%dT%H:%M:%S+00:00', false) }}",
                               "icon": "mdi:restore"})
    for label, key in _keyed(labels).items():
        count_sensor(f"label_{key}", f"Label {label}",
                     f"{{{{ value_json.labels.get({label!r}, 0) }}}}", "mdi:tag")
    add("sensor", "last_item", {"name": "Last item", "state_topic": item, "value_template": "{{ value_json.label }}",
                                "json_attributes_topic": item, "icon": "mdi:recycle"})
    add("sensor", "last_confidence", {"name": "Last confidence", "state_topic": item,
                                      "value_template": "{{ (value_json.confidence * 100) | round(1) }}",
                                      "unit_of_measurement": "%", "state_class": "measurement",
                                      "suggested_display_precision": 1, "icon": "mdi:gauge"})
    add("sensor", "inference_ms", {"name": "Inference time", "state_topic": stats,
                                   "value_template": "{{ value_json.inference_ms_mean }}",
                                   "unit_of_measurement": "ms", "device_class": "duration",
                                   "state_class": "measurement", "suggested_display_precision": 1,
                                   "entity_category": "diagnostic", "icon": "mdi:timer-outline"})
    add("sensor", "outbox", {"name": "Undelivered events", "state_topic": stats,
                             "value_template": "{{ value_json.outbox }}", "state_class": "measurement",
                             "entity_category": "diagnostic", "icon": "mdi:tray-full"})
    # A flap that cannot move still counts items but no longer sorts them: worth an alert on the dashboard.
    add("sensor", "flap_errors", {"name": "Flap errors", "state_topic": stats,
                                  "value_template": "{{ value_json.flap_errors }}", "state_class": "total_increasing",
                                  "entity_category": "diagnostic", "icon": "mdi:alert-circle-outline"})
    # The connectivity sensor must stay available itself, or HA would show "unavailable" instead of "off".
    add("binary_sensor", "online", {"name": "Online", "state_topic": f"{topic_root}/availability",
                                    "value_template": "{{ 'ON' if value == 'online' else 'OFF' }}",
                                    "device_class": "connectivity", "entity_category": "diagnostic"},
        available_always=True)
    # Online is on/off; this one tells a crash or power cut (offline) from a deliberate stop (stopped).
    add("sensor", "status", {"name": "Status", "state_topic": f"{topic_root}/availability", "device_class": "enum",
                             "options": ["online", "offline", "stopped"], "entity_category": "diagnostic",
                             "icon": "mdi:list-status"}, available_always=True)
    add("button", "reset_counts", {"name": "Reset counts", "command_topic": f"{topic_root}/cmd/reset_counts",
                                   "payload_press": '{"request_id": "home-assistant"}', "icon": "mdi:restore",
                                   "qos": 1})  # HA's default QoS 0 could lose a press made during a reconnect
    return messages
