"""MqttLink and Home Assistant: discovery sent again on its birth message, stale entities removed, hostile configs."""

from __future__ import annotations

import json
import time

import pytest

from edge.config import MqttConfig
from edge.mqtt import MqttLink
from edge.store import Store
from tests.mqtt_helpers import Listener, event, make_link, retained

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("prefix", ["homeassistant", "discovery"])
def test_home_assistants_birth_message_republishes_discovery_whatever_the_prefix(tmp_path, mosquitto, prefix):
    # The birth topic is Home Assistant's own setting (homeassistant/status); it does not follow the prefix.
    from edge.config import HomeAssistantConfig

    calls, config_topic = [], f"{prefix}/sensor/x/y/config"
    settings = MqttConfig(enabled=True, host="127.0.0.1", port=mosquitto.port,
                          home_assistant=HomeAssistantConfig(discovery_prefix=prefix))
    link = MqttLink(settings, "bin-t", Store(tmp_path / "state" / "smartbin.db"),
                    discovery_provider=lambda: calls.append(1) or [(config_topic, {"a": 1})])
    link.start()
    assert link.wait_connected(10)
    with Listener(mosquitto.port, f"{prefix}/#") as listener:
        listener.wait_for(lambda: listener.on(config_topic), what="discovery")
        before = len(calls)
        listener.publish("homeassistant/status", "online")
        listener.wait_for(lambda: len(calls) > before, what="republish on Home Assistant's birth message")
    link.stop()
    assert json.loads(retained(mosquitto.port, config_topic).payload) == {"a": 1}


def test_entities_gone_from_discovery_are_removed_from_home_assistant(tmp_path, mosquitto):
    labels = [["glass", "paper"]]
    link, _ = make_link(tmp_path, mosquitto, discovery_provider=lambda: [
        (f"homeassistant/sensor/bin_t/label_{label}/config", {"name": label}) for label in labels[0]])
    link.start()
    assert link.wait_connected(10)
    with Listener(mosquitto.port, "homeassistant/#") as listener:
        listener.wait_for(lambda: listener.on("homeassistant/sensor/bin_t/label_paper/config"), what="discovery")
        labels[0] = ["glass", "metal"]  # a model with other labels was loaded
        link.publish_discovery()
        listener.wait_for(lambda: listener.on("homeassistant/sensor/bin_t/label_metal/config"), what="new label")
    link.stop()
    assert retained(mosquitto.port, "homeassistant/sensor/bin_t/label_paper/config", timeout=1) is None
    assert json.loads(retained(mosquitto.port, "homeassistant/sensor/bin_t/label_glass/config").payload) == {
        "name": "glass"}


def test_entities_left_by_an_earlier_configuration_are_removed_after_a_restart(tmp_path, mosquitto):
    with Listener(mosquitto.port, "homeassistant/#") as earlier_run:
        for node, key in (("bin_t", "bin_compost"), ("bin_t", "label_glass"), ("bin_u", "bin_compost")):
            device = {"identifiers": [f"smartbin_{node.replace('_', '-')}"]}
            earlier_run.publish(f"homeassistant/sensor/{node}/{key}/config",
                                json.dumps({"name": key, "device": device}), retain=True)
        earlier_run.wait_for(lambda: len(earlier_run.on("homeassistant/sensor/bin_u/bin_compost/config")) == 1,
                             what="the earlier run's configs")
    link, _ = make_link(tmp_path, mosquitto, discovery_provider=lambda: [
        ("homeassistant/sensor/bin_t/label_glass/config", {"name": "Label glass"})])
    link.start()
    assert link.wait_connected(10)
    deadline = time.monotonic() + 10
    while retained(mosquitto.port, "homeassistant/sensor/bin_t/bin_compost/config", timeout=0.5) is not None:
        assert time.monotonic() < deadline, "the compost bin of the earlier configuration was not removed"
    link.stop()
    assert json.loads(retained(mosquitto.port, "homeassistant/sensor/bin_t/label_glass/config").payload) == {
        "name": "Label glass"}
    assert retained(mosquitto.port, "homeassistant/sensor/bin_u/bin_compost/config") is not None  # another bin's


def test_a_bin_whose_id_maps_to_the_same_node_is_reported_and_never_cleared(tmp_path, mosquitto, caplog):
    # "Bin_T" and "bin-t" both become the node id bin_t: their discovery topics are shared.
    neighbour = json.dumps({"name": "Label metal", "device": {"identifiers": ["smartbin_Bin_T"]}})
    with Listener(mosquitto.port, "homeassistant/#") as other_bin:
        other_bin.publish("homeassistant/sensor/bin_t/label_metal/config", neighbour, retain=True)
        other_bin.wait_for(lambda: other_bin.on("homeassistant/sensor/bin_t/label_metal/config"), what="retained")
    link, _ = make_link(tmp_path, mosquitto, discovery_provider=lambda: [
        ("homeassistant/sensor/bin_t/label_glass/config", {"name": "Label glass",
                                                          "device": {"identifiers": ["smartbin_bin-t"]}})])
    with caplog.at_level("WARNING", logger="edge.mqtt"):
        link.start()
        assert link.wait_connected(10)
        deadline = time.monotonic() + 10
        while "smartbin_Bin_T" not in caplog.text:
            assert time.monotonic() < deadline, "the other bin on the same node id was not reported"
            time.sleep(0.05)
        link.stop()
    assert json.loads(retained(mosquitto.port, "homeassistant/sensor/bin_t/label_metal/config").payload) == \
        json.loads(neighbour)
    assert "differ in more than upper/lower case" in caplog.text
    assert caplog.text.count("smartbin_Bin_T") == 1  # once per neighbour, not once per message


def test_a_reload_racing_a_reconnect_keeps_the_new_models_entities(tmp_path, mosquitto):
    import threading

    labels = ["glass"]
    asked_on_connect, reload_done = threading.Event(), threading.Event()

    def provider():
        current = list(labels)
        if threading.current_thread() is not threading.main_thread() and not asked_on_connect.is_set():
            asked_on_connect.set()  # paho's thread read the old labels; the reload tries to overtake it
            reload_done.wait(1.0)  # with the lock the reload cannot finish meanwhile: this times out
        return [(f"homeassistant/sensor/bin_t/label_{label}/config", {"name": label}) for label in current]

    link, _ = make_link(tmp_path, mosquitto, discovery_provider=provider)
    link.start()
    assert asked_on_connect.wait(10)
    labels[:] = ["plastic"]  # reload_model swaps the model, then re-publishes discovery
    link.publish_discovery()
    reload_done.set()
    assert link.wait_connected(10)
    time.sleep(0.5)  # the retained configs the subscription hands back
    link.stop()
    assert retained(mosquitto.port, "homeassistant/sensor/bin_t/label_plastic/config") is not None
    assert retained(mosquitto.port, "homeassistant/sensor/bin_t/label_glass/config", timeout=1) is None


def test_a_hostile_retained_discovery_config_does_not_stop_the_link(tmp_path, mosquitto):
    with Listener(mosquitto.port, "homeassistant/#") as somebody:
        somebody.publish("homeassistant/sensor/bin_t/label_metal/config", b"[" * 100_000, retain=True)
        somebody.wait_for(lambda: somebody.on("homeassistant/sensor/bin_t/label_metal/config"), what="the config")
    link, store = make_link(tmp_path, mosquitto, discovery_provider=lambda: [
        ("homeassistant/sensor/bin_t/label_glass/config", {"name": "Label glass"})])
    link.start()
    assert link.wait_connected(10)
    time.sleep(0.5)  # the broker hands the retained config over after the subscription
    store.record_item(event(1))
    link.wake()
    assert link.flush(10), "paho's network thread must survive the message"
    link.stop()
