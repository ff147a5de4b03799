"""Home Assistant discovery payloads follow HA's schema: unique ids, one device, availability, topics."""

from __future__ import annotations

import json
import re

from edge.hass import discovery_messages, recorded_keys

ROOT = "smartbin/bin-1"


def messages():
    return discovery_messages("bin-1", ROOT, ["cardboard", "glass"], ["paper", "glass", "rest"])


def test_topics_follow_the_discovery_pattern_and_ids_are_unique():
    pattern = re.compile(r"^homeassistant/(sensor|binary_sensor|button)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")
    topics = [topic for topic, _ in messages()]
    assert all(pattern.match(topic) for topic in topics), topics
    unique_ids = [config["unique_id"] for _, config in messages()]
    assert len(set(unique_ids)) == len(unique_ids)


def test_each_entity_asks_for_an_id_made_of_its_key_not_its_name():
    # Otherwise HA derives it from the name, and of "Glass" and "glass" the first to arrive gets the plain id.
    configs = dict(discovery_messages("bin-1", ROOT, ["Glass", "glass"], ["rest"]))
    for topic, config in configs.items():
        _, component, node, key, _ = topic.split("/")
        assert config["default_entity_id"] == f"{component}.smartbin_{node}_{key}" == f"{component}.{config['unique_id']}"
    assert configs["homeassistant/sensor/bin_1/label_glass/config"]["name"] == "Label glass"


def test_there_is_a_count_sensor_per_bin_per_label_and_the_totals():
    keys = {topic.split("/")[3] for topic, _ in messages()}
    assert {"total", "total_since_reset", "bin_paper", "bin_glass", "bin_rest", "label_cardboard", "label_glass",
            "last_item", "last_confidence", "inference_ms", "flap_errors", "online", "reset_counts"} <= keys


def test_every_entity_shares_one_device_block():
    devices = {json.dumps(config["device"], sort_keys=True) for _, config in messages()}
    assert len(devices) == 1
    device = json.loads(devices.pop())
    assert device["identifiers"] == ["smartbin_bin-1"] and device["name"]


def test_entities_use_the_bins_availability_except_the_connectivity_and_status_sensors():
    for topic, config in messages():
        if topic.endswith(("/online/config", "/status/config")):
            assert "availability_topic" not in config
            assert config["state_topic"] == f"{ROOT}/availability"
        else:
            assert config["availability_topic"] == f"{ROOT}/availability"
            assert "stopped" not in config["availability_template"]  # anything but online is offline


def test_count_sensors_read_the_retained_counts_topic():
    config = dict(messages())["homeassistant/sensor/bin_1/bin_paper/config"]
    assert config["state_topic"] == f"{ROOT}/counts"
    assert config["value_template"] == "{{ value_json.bins.get('paper', 0) }}"
    assert config["state_class"] == "total_increasing"


def test_each_bin_also_counts_since_the_last_reset_so_an_emptied_bin_starts_from_zero():
    configs = dict(messages())
    config = configs["homeassistant/sensor/bin_1/since_reset_bin_paper/config"]
    assert config["state_topic"] == f"{ROOT}/counts"
    assert config["value_template"] == "{{ value_json.since_reset.bins.get('paper', 0) }}"
    assert config["state_class"] == "total_increasing"  # a reset to 0 starts a new cycle in HA's statistics
    reset_at = configs["homeassistant/sensor/bin_1/reset_at/config"]
    assert reset_at["device_class"] == "timestamp" and "since_reset.reset_at" in reset_at["value_template"]


def test_the_reset_button_sends_a_valid_reset_counts_command():
    from edge.commands import parse_command

    config = dict(messages())["homeassistant/button/bin_1/reset_counts/config"]
    assert config["command_topic"] == f"{ROOT}/cmd/reset_counts"
    assert parse_command("reset_counts", config["payload_press"]).request_id == "home-assistant"
    assert config["qos"] == 1


def test_the_owner_of_a_discovery_config_is_its_smartbin_device_identifier():
    from edge.hass import device_identifier, owner_of

    topic, config = discovery_messages("Bin-1", "smartbin/Bin-1", ["glass"], ["glass"])[0]
    assert owner_of(json.dumps(config).encode()) == device_identifier("Bin-1") == "smartbin_Bin-1"
    assert owner_of(b'{"device": {"identifiers": ["zigbee_0x12"]}}') is None  # not a smartbin device
    assert owner_of(b"not json") is None
    assert owner_of(b'{"name": "no device block"}') is None


def test_names_that_would_share_an_entity_key_get_distinct_ones_and_the_others_keep_theirs():
    configs = dict(discovery_messages("bin-1", ROOT, ["Glass", "glass", "玻璃", "纸", "metal"], ["paper"]))
    label_keys = [topic.split("/")[3] for topic in configs if "/label_" in topic]
    assert len(label_keys) == len(set(label_keys)) == 5
    assert "label_metal" in label_keys  # no collision, no suffix: existing entities keep their ids
    assert "label_glass" in label_keys  # "glass" keeps its key when "Glass" comes along
    assert len({config["unique_id"] for config in configs.values()}) == len(configs)


class MetaStore:
    """The two meta-table calls ``recorded_keys`` makes of ``edge.store.Store``."""

    def __init__(self):
        self.values = {}

    def meta(self, key, default=None):
        return self.values.get(key, default)

    def set_meta(self, key, value):
        self.values[key] = value


def test_a_name_keeps_its_entity_key_across_model_reloads_and_no_other_name_ever_takes_it():
    store = MetaStore()
    assert recorded_keys(store, "labels", ["trash", "glass"]) == {"glass": "glass", "trash": "trash"}
    # A new model says "Trash": it must not take over the entity that counted "trash".
    assert recorded_keys(store, "labels", ["Trash", "glass"])["Trash"].startswith("trash_")
    # The other way round: "Trash" had "trash" first (alone), then a model brings "trash".
    store = MetaStore()
    assert recorded_keys(store, "labels", ["Trash"]) == {"Trash": "trash"}
    keys = recorded_keys(store, "labels", ["Trash", "trash"])
    assert keys["Trash"] == "trash" and keys["trash"].startswith("trash_")
    # Two names that collide from the start keep the keys they were first given, whichever is counted.
    store = MetaStore()
    first = recorded_keys(store, "labels", ["Trash", "trash"])
    assert recorded_keys(store, "labels", ["trash", "Trash"]) == first == recorded_keys(store, "labels", ["Trash", "trash"])
    store.values["hass_labels_keys"] = "not json"  # edited by hand: a new record, no crash
    assert recorded_keys(store, "labels", ["glass"]) == {"glass": "glass"}


def test_discovery_uses_the_entity_keys_it_is_given():
    configs = dict(discovery_messages("bin-1", ROOT, {"Trash": "trash_abc123"}, {"paper": "paper"}))
    trash = configs["homeassistant/sensor/bin_1/label_trash_abc123/config"]
    assert "'Trash'" in trash["value_template"]


def test_item_and_diagnostic_sensors_read_retained_topics_so_they_have_a_value_after_a_restart():
    configs = dict(messages())
    assert configs["homeassistant/sensor/bin_1/last_item/config"]["state_topic"] == f"{ROOT}/last_item"
    assert configs["homeassistant/sensor/bin_1/last_item/config"]["json_attributes_topic"] == f"{ROOT}/last_item"
    assert configs["homeassistant/sensor/bin_1/last_confidence/config"]["state_topic"] == f"{ROOT}/last_item"
    assert configs["homeassistant/sensor/bin_1/inference_ms/config"]["state_topic"] == f"{ROOT}/stats"
    assert all("has_entity_name" not in config for config in configs.values())  # not a discovery option


def test_the_status_sensor_tells_a_crash_from_a_deliberate_stop():
    config = dict(messages())["homeassistant/sensor/bin_1/status/config"]
    assert config["state_topic"] == f"{ROOT}/availability" and config["device_class"] == "enum"
    assert config["options"] == ["online", "offline", "stopped"]
