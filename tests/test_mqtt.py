"""MqttLink against a real mosquitto: availability, at-least-once outbox delivery, counts, stats, commands.

Home Assistant discovery through the link is in ``test_mqtt_discovery.py``.
"""

from __future__ import annotations

import json
import time

import pytest

from edge.config import MqttConfig
from edge.mqtt import MqttLink
from edge.store import Store
from tests.conftest import Mosquitto
from tests.mqtt_helpers import ROOT, Listener, PersistentBroker, event, make_link, retained

pytestmark = pytest.mark.timeout(60)
def stopped_broker_with_a_kept_session(tmp_path, topic: str, session: str) -> PersistentBroker:
    """A broker, stopped, that keeps ``session``'s subscription to ``topic``: a listener reconnecting
    with that session after the broker's restart misses nothing published since."""
    broker = PersistentBroker(tmp_path).start()
    with Listener(broker.port, topic, session=session):
        pass
    broker.stop()
    return broker


def test_availability_goes_online_then_stopped_and_is_retained(tmp_path, mosquitto):
    link, _ = make_link(tmp_path, mosquitto)
    with Listener(mosquitto.port, f"{ROOT}/availability") as listener:
        link.start()
        listener.wait_for(lambda: "online" in listener.texts(f"{ROOT}/availability"), what="online")
        link.stop()
        listener.wait_for(lambda: "stopped" in listener.texts(f"{ROOT}/availability"), what="stopped")
    assert retained(mosquitto.port, f"{ROOT}/availability").text == "stopped"


@pytest.mark.parametrize("availability", ["stopped", "offline"])
def test_stopping_right_after_the_start_never_leaves_online_retained(tmp_path, mosquitto, availability):
    # The connection races the stop; these delays put the stop before, during and after connecting.
    for attempt, delay in enumerate([0, 0.001, 0.002, 0.003, 0.005, 0.008, 0.012, 0.02]):
        link, store = make_link(tmp_path / str(attempt), mosquitto)
        link.start()
        time.sleep(delay)
        link.stop(availability=availability)
        store.close()
        message = retained(mosquitto.port, f"{ROOT}/availability", timeout=0.5)
        assert message is None or message.text == availability


def test_every_outbox_event_is_delivered_and_then_deleted(tmp_path, mosquitto):
    link, store = make_link(tmp_path, mosquitto)
    with Listener(mosquitto.port, f"{ROOT}/#") as listener:
        link.start()
        for i in range(120):  # more than one window of in-flight messages
            store.record_item(event(i))
        link.wake(counts_changed=True)
        assert link.flush(10)
        listener.wait_for(lambda: len(listener.payloads(f"{ROOT}/item")) == 120, what="120 items")
        link.stop()
        ids = [p["id"] for p in listener.payloads(f"{ROOT}/item")]
    assert sorted(set(ids)) == sorted(f"id-{i}" for i in range(120))
    assert store.outbox_size() == 0
    assert retained(mosquitto.port, f"{ROOT}/counts").json()["total"] == 120
    assert retained(mosquitto.port, f"{ROOT}/last_item").json()["id"] == "id-119"  # the newest, kept for dashboards


def test_retained_counts_never_include_an_item_a_power_cut_could_still_take(tmp_path, mosquitto):
    link, store = make_link(tmp_path, mosquitto)
    with Listener(mosquitto.port, f"{ROOT}/counts") as listener:
        link.start()
        store.record_item(event(0))
        store.record_item(event(1), durable=False)  # committed, not yet fsynced
        link.wake(counts_changed=True)
        listener.wait_for(lambda: listener.payloads(f"{ROOT}/counts"), what="the counts")
        assert listener.payloads(f"{ROOT}/counts")[-1]["total"] == 1
        store.sync()
        link.wake(counts_changed=True)
        listener.wait_for(lambda: listener.payloads(f"{ROOT}/counts")[-1]["total"] == 2, what="the synced counts")
        link.stop()


def test_last_item_is_restated_when_a_broker_that_lost_its_retained_messages_comes_back(tmp_path):
    broker = Mosquitto(tmp_path).start()  # no persistence: a restart forgets every retained message
    link, store = make_link(tmp_path, broker)
    link.start()
    try:
        assert link.wait_connected(10)  # flush() gives up at once while not connected
        store.record_item(event(1))
        link.wake(counts_changed=True)
        assert link.flush(10)
        assert retained(broker.port, f"{ROOT}/last_item").json()["id"] == "id-1"
        broker.stop()
        broker.start()
        deadline = time.monotonic() + 10
        # A fresh subscriber each time: one subscribed before the link reconnects would see a live copy.
        while (message := retained(broker.port, f"{ROOT}/last_item", timeout=0.3)) is None:
            assert time.monotonic() < deadline, "last_item never restated"
        link.stop()
    finally:
        broker.stop()
    assert message is not None and message.json() == event(1)


def test_a_restarted_bin_restates_its_last_item_only_after_its_backlog(tmp_path, mosquitto):
    store = Store(tmp_path / "state" / "smartbin.db")
    store.record_item(event(1))
    store.mark_delivered([message.seq for message in store.pending()])  # delivered before the restart
    store.record_item(event(2))  # still queued
    store.close()
    link, store = make_link(tmp_path, mosquitto)
    with Listener(mosquitto.port, f"{ROOT}/last_item") as listener:
        link.start()
        assert link.wait_connected(10) and link.flush(10)
        listener.wait_for(lambda: listener.on(f"{ROOT}/last_item"), what="last_item")
        time.sleep(0.3)  # a pump pass or two: nothing older may follow
        link.stop()
    assert [m.json()["id"] for m in listener.on(f"{ROOT}/last_item")] == ["id-2"]


def test_a_store_that_cannot_delete_delivered_events_costs_no_clean_stop(tmp_path, mosquitto, monkeypatch):
    # A full SD card: the outbox delete fails; the events stay queued (sent again later, same ids).
    from edge.errors import StoreError

    link, store = make_link(tmp_path, mosquitto)
    link.start()
    assert link.wait_connected(10)

    def disk_full(seqs):
        raise StoreError("smartbin.db: cannot remove delivered messages: database or disk is full")

    monkeypatch.setattr(store, "mark_delivered", disk_full)
    with Listener(mosquitto.port, f"{ROOT}/item") as listener:
        store.record_item(event(1))
        link.wake(counts_changed=True)
        listener.wait_for(lambda: listener.on(f"{ROOT}/item"), what="the item")
    link.stop()  # no exception
    assert retained(mosquitto.port, f"{ROOT}/availability").text == "stopped"
    assert store.outbox_size() == 1


def test_events_recorded_while_the_broker_is_down_arrive_once_it_starts(tmp_path):
    broker = stopped_broker_with_a_kept_session(tmp_path, f"{ROOT}/item", "test-mqtt")
    link, store = make_link(tmp_path, broker)
    link.start()
    try:
        for i in range(5):
            store.record_item(event(i))
            link.wake(counts_changed=True)
        assert not link.flush(0.3)
        broker.start()
        with Listener(broker.port, f"{ROOT}/item", session="test-mqtt") as listener:
            assert link.wait_connected(10)
            assert link.flush(10)
            listener.wait_for(lambda: len(listener.on(f"{ROOT}/item")) >= 5, what="5 items")
        link.stop()
    finally:
        broker.stop()
    assert sorted({p["id"] for p in listener.payloads(f"{ROOT}/item")}) == [f"id-{i}" for i in range(5)]


def test_commands_reach_the_handler_and_malformed_ones_do_not_break_the_link(tmp_path, mosquitto):
    seen = []

    def handler(name, payload):
        seen.append((name, payload))
        if name == "boom":
            raise RuntimeError("handler bug")

    link, store = make_link(tmp_path, mosquitto, on_command=handler)
    link.start()
    assert link.wait_connected(10)
    with Listener(mosquitto.port, f"{ROOT}/#") as listener:
        listener.publish(f"{ROOT}/cmd/boom", b"{")
        listener.publish(f"{ROOT}/cmd/flap", b'{"bin": "glass"}')
        listener.wait_for(lambda: len(seen) == 2, what="two commands")
        link.publish_result({"command": "flap", "ok": True})
        store.record_item(event(1))
        link.wake()
        listener.wait_for(lambda: listener.on(f"{ROOT}/item"), what="item after a failing handler")
    link.stop()
    assert seen == [("boom", b"{"), ("flap", b'{"bin": "glass"}')]  # our own cmd/result is not a command


def test_stats_are_published_periodically(tmp_path, mosquitto):
    link, _ = make_link(tmp_path, mosquitto, stats_provider=lambda: {"fps": 1.0})
    with Listener(mosquitto.port, f"{ROOT}/stats") as listener:
        link.start()
        listener.wait_for(lambda: listener.on(f"{ROOT}/stats"), timeout=5, what="stats")
    link.stop()
    assert listener.payloads(f"{ROOT}/stats")[0] == {"fps": 1.0}
    assert retained(mosquitto.port, f"{ROOT}/stats").json() == {"fps": 1.0}  # a dashboard connecting later sees it


def test_stats_are_published_again_once_the_backlog_is_out_so_the_outbox_size_is_not_stale(tmp_path, mosquitto):
    store = Store(tmp_path / "state" / "smartbin.db")
    for number in range(6):
        store.record_item(event(number))  # queued while the broker was away
    store.close()
    link, store = make_link(tmp_path, mosquitto, stats_provider=lambda: {"outbox": store.outbox_size()})
    link.settings.stats_interval_s = 3600  # only the one at connecting, and the one after the backlog
    with Listener(mosquitto.port, f"{ROOT}/stats") as listener:
        link.start()
        assert link.wait_connected(10) and link.flush(10)
        listener.wait_for(lambda: listener.payloads(f"{ROOT}/stats")[-1:] == [{"outbox": 0}], what="fresh stats")
    link.stop()


def test_the_last_stats_go_out_at_stop_so_a_stopped_bin_shows_its_final_figures(tmp_path, mosquitto):
    figures = {"items": 0}
    link, _ = make_link(tmp_path, mosquitto, stats_provider=lambda: dict(figures))
    link.settings.stats_interval_s = 3600  # only the one at connecting, then the one at stop
    link.start()
    assert link.wait_connected(10)
    figures["items"] = 12
    link.stop()
    assert retained(mosquitto.port, f"{ROOT}/stats").json() == {"items": 12}


def test_a_connection_made_only_to_deliver_the_backlog_never_says_online(tmp_path):
    broker = stopped_broker_with_a_kept_session(tmp_path, f"{ROOT}/#", "test-drain")
    link, store = make_link(tmp_path, broker)
    link.start()
    try:
        for i in range(3):
            store.record_item(event(i))
        link.begin_shutdown("stopped")  # sorting is over; the broker comes back while the bin flushes
        broker.start()
        with Listener(broker.port, f"{ROOT}/#", session="test-drain") as listener:
            assert link.wait_connected(10)
            assert link.flush(10)
            link.stop()
            listener.wait_for(lambda: "stopped" in listener.texts(f"{ROOT}/availability"), what="stopped")
        assert "online" not in listener.texts(f"{ROOT}/availability")
        assert sorted({p["id"] for p in listener.payloads(f"{ROOT}/item")}) == ["id-0", "id-1", "id-2"]
        assert retained(broker.port, f"{ROOT}/counts").json()["total"] == 3
    finally:
        broker.stop()


def test_an_online_the_broker_never_acknowledged_is_followed_by_the_final_word(tmp_path):
    # An "online" from a connection that dropped before its PUBACK: paho sends it again after the next
    # CONNACK, after on_connect has said "stopped". The retained value must end as "stopped" anyway.
    broker = PersistentBroker(tmp_path).start()
    broker.stop()
    link, _ = make_link(tmp_path, broker)
    link._online_info = info = link.client.publish(link.topic("availability"), "online", qos=1, retain=True)
    info.rc = 0  # queued (paho keeps QoS 1 messages while disconnected), as MqttLink reads NO_CONN
    link.begin_shutdown("stopped")
    broker.start()
    try:
        with Listener(broker.port, f"{ROOT}/availability") as listener:
            link.start()
            assert link.wait_connected(10)
            listener.wait_for(lambda: listener.texts(f"{ROOT}/availability")[-1:] == ["stopped"]
                              and "online" in listener.texts(f"{ROOT}/availability"), what="online, then stopped")
            assert retained(broker.port, f"{ROOT}/availability").text == "stopped"  # while still flushing
            link.stop()
    finally:
        broker.stop()


def test_unusable_tls_files_are_a_config_error(tmp_path):
    from edge.errors import ConfigError

    bad_ca = tmp_path / "ca.crt"
    bad_ca.write_text("not a certificate")
    settings = MqttConfig(enabled=True, tls={"enabled": True, "ca_file": str(bad_ca)})
    with pytest.raises(ConfigError, match="mqtt.tls: cannot use the TLS files"):
        MqttLink(settings, "bin-t", Store(tmp_path / "db"))


class _Acked:
    def is_published(self) -> bool:
        return True


def test_acknowledgements_seen_by_two_threads_at_once_are_counted_once(tmp_path):
    store = Store(tmp_path / "smartbin.db")
    link = MqttLink(MqttConfig(enabled=True), "bin-t", store)
    link._inflight = {1: _Acked(), 2: _Acked()}
    deliver = store.mark_delivered

    def mark_delivered_while_the_other_thread_does_too(seqs):
        deliver(seqs)
        if link._inflight:  # stop() runs _mark_acked while the pump is between its two steps
            store.mark_delivered = deliver
            link._mark_acked()

    store.mark_delivered = mark_delivered_while_the_other_thread_does_too
    link._mark_acked()
    assert link._inflight == {} and link.published_events == 2
    store.close()


def test_a_publish_racing_a_disconnect_is_still_acknowledged_and_deleted(tmp_path, mosquitto):
    # The pump checked `connected`, then paho's socket closed before publish(): paho returns NO_CONN,
    # keeps the message and sends it after the (re)connect. Here the pump runs before the first connect.
    link, store = make_link(tmp_path, mosquitto)
    for i in range(3):
        store.record_item(event(i))
    link._connected.set()  # what the pump saw a moment before the link dropped
    link._publish_pending()
    link._connected.clear()
    assert len(link._inflight) == 3
    with Listener(mosquitto.port, f"{ROOT}/item") as listener:
        link.start()
        assert link.wait_connected(10)
        assert link.flush(10), "acknowledged messages must leave the outbox"
        listener.wait_for(lambda: len(listener.on(f"{ROOT}/item")) >= 3, what="3 items")
        store.record_item(event(3))
        link.wake()
        assert link.flush(10), "the pump must keep delivering afterwards"
    link.stop()
    assert store.outbox_size() == 0 and link.published_events == 4


def test_retained_commands_are_ignored_and_live_ones_obeyed(tmp_path, mosquitto, caplog):
    seen = []
    with Listener(mosquitto.port, f"{ROOT}/#") as somebody:
        somebody.publish(f"{ROOT}/cmd/reset_counts", b"{}", retain=True)
        somebody.wait_for(lambda: somebody.on(f"{ROOT}/cmd/reset_counts"), what="the retained command")
    link, _ = make_link(tmp_path, mosquitto, on_command=lambda name, payload: seen.append(name))
    with caplog.at_level("WARNING", logger="edge.mqtt"):
        link.start()
        assert link.wait_connected(10)
        with Listener(mosquitto.port, f"{ROOT}/#") as operator:
            operator.publish(f"{ROOT}/cmd/flap", b'{"bin": "glass"}')  # connected means subscribed: no retry
            operator.wait_for(lambda: seen, what="the live command")
        link.stop()
    assert seen == ["flap"]
    assert "ignoring the retained command" in caplog.text


def test_a_lasting_store_fault_is_logged_once_a_minute_not_every_half_second(tmp_path, mosquitto, caplog):
    from edge.errors import StoreError

    link, store = make_link(tmp_path, mosquitto)

    def full_disk(*args, **kwargs):
        raise StoreError("smartbin.db: cannot remove delivered messages: database or disk is full")

    store.pending = full_disk
    link.start()
    try:
        assert link.wait_connected(10)
        time.sleep(1.6)  # at least three failed pump rounds
    finally:
        link.stop()
    logged = [record for record in caplog.records if "outbox pump error" in record.getMessage()]
    assert len(logged) == 1 and "database or disk is full" in logged[0].exc_text


def test_stopping_between_connack_and_suback_still_says_stopped(tmp_path):
    from tests.mqtt_helpers import NoSubackBroker

    broker = NoSubackBroker()
    link, _ = make_link(tmp_path, broker)
    link.start()
    try:
        assert broker.subscribed.wait(10) and not link.connected  # not ready: commands could be lost
    finally:
        link.stop(timeout=2)
        broker.close()
    availability = [(payload, retained) for topic, payload, retained in broker.published if topic.endswith("/availability")]
    assert availability[-1] == (b"stopped", True)  # never "online" left behind


def test_events_flow_even_when_the_broker_never_confirms_the_subscriptions(tmp_path, monkeypatch):
    import edge.mqtt
    from tests.mqtt_helpers import NoSubackBroker

    monkeypatch.setattr(edge.mqtt, "SUBACK_TIMEOUT_S", 0.3)
    broker = NoSubackBroker()
    link, store = make_link(tmp_path, broker)
    store.record_item(event(1))
    link.start()
    try:
        deadline = time.monotonic() + 10
        while not any(topic.endswith("/item") for topic, _, _ in broker.published) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(json.loads(payload)["id"] == "id-1" for topic, payload, _ in broker.published
                   if topic.endswith("/item"))
    finally:
        link.stop(timeout=2)
        broker.close()


def test_an_unreachable_broker_is_warned_about_at_once_and_not_at_every_retry(tmp_path, caplog):
    # A typo in mqtt.host or mqtt.port: the operator reading the log must see it without debug logging.
    broker = Mosquitto(tmp_path)  # its port, with nothing listening yet
    link, store = make_link(tmp_path, broker)
    caplog.set_level("DEBUG", logger="edge.mqtt")
    link.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and sum("still unreachable" in r.getMessage() for r in caplog.records) < 2:
            time.sleep(0.05)
        broker.start()
        assert link.wait_connected(10)
    finally:
        link.stop()
        broker.stop()
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "unreachable" in r.getMessage()]
    assert len(warned) == 1 and f"MQTT broker 127.0.0.1:{broker.port} unreachable (check mqtt.host" in \
        warned[0].getMessage()
    assert sum("still unreachable" in r.getMessage() for r in caplog.records) >= 2  # the retries, at debug level


def test_two_bins_with_one_client_id_are_told_why_the_broker_keeps_closing_them(tmp_path, mosquitto, caplog):
    # The broker hands the client id to the newer connection and closes the older, again and again.
    first, _ = make_link(tmp_path / "first", mosquitto)
    second, _ = make_link(tmp_path / "second", mosquitto)
    first.start()
    second.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("keeps closing" in r.getMessage() for r in caplog.records):
            time.sleep(0.05)
    finally:
        first.stop()
        second.stop()
    hints = {r.getMessage() for r in caplog.records if "keeps closing" in r.getMessage()}
    assert hints and all("another client connected with the client id 'smartbin-bin-t'" in hint for hint in hints)
