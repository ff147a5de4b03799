"""The bin's MQTT link (paho-mqtt >= 2, VERSION2 callbacks): outbox delivery, state topics, commands.

Delivery is at-least-once with stable ids: item events live in the SQLite outbox until the
broker acknowledged them (QoS 1 PUBACK, seen in ``on_publish`` for that message id), so a
broker outage or a restart loses nothing. A pump thread moves outbox rows to paho, a
window at a time; paho itself re-sends un-acknowledged messages after a reconnect, so the
pump never publishes a row twice within one process.

Topics, under ``<prefix>/<device_id>/`` (see docs/mqtt.md): ``availability`` (retained
``online``; ``offline`` as Last Will; ``stopped`` on a clean exit), ``item`` (QoS 1),
``counts`` (retained), ``stats`` (every N s), ``cmd/<name>`` (in), ``cmd/result`` (out).

Usage:
    link = MqttLink(config.mqtt, "bin-1", store, on_command=handle)
    link.start()
    store.record_item(event); link.wake(counts_changed=True)
    link.stop()
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable

import paho.mqtt.client as mqtt

from edge.config import MqttConfig, tls_paths
from edge.discovery import DiscoveryRegistry
from edge.errors import ConfigError, StoreError
from edge.mqtt_health import LinkHealth
from edge.mqtt_inbound import CommandHandler, InboundRouter
from edge.store import Store

log = logging.getLogger(__name__)

SUBACK_TIMEOUT_S = 10.0
WINDOW = 50  # un-acknowledged outbox messages handed to paho at once; bounds its memory during an outage
CONNECTING_GRACE_S = 0.5  # how long stop() waits for a connection that may be under way
Provider = Callable[[], Any]


class MqttLink:
    """Connects (and reconnects with back-off) to the broker and keeps the bin's topics up to date.

    Args:
        settings: the ``mqtt`` config section.
        device_id: this bin's id.
        store: the outbox and counts.
        password: broker password (read by the caller from a file or systemd credential).
        on_command: called on paho's thread with ``(name, payload)`` for each live, non-empty ``cmd/<name>`` message.
        stats_provider: returns the ``stats`` payload; called every ``stats_interval_s`` while connected.
        discovery_provider: returns Home Assistant ``(topic, config)`` pairs to publish retained.
        config_path: the config file, to resolve relative TLS file names.

    Usage:
        link = MqttLink(settings, "bin-1", store); link.start(); ...; link.stop()
    """

    def __init__(self, settings: MqttConfig, device_id: str, store: Store, password: str | None = None,
                 on_command: CommandHandler | None = None, stats_provider: Provider | None = None,
                 discovery_provider: Provider | None = None, config_path: str | None = None):
        self.settings = settings
        self.root = settings.topic_root(device_id)
        self.store = store
        self.stats_provider = stats_provider
        # Home Assistant discovery bookkeeping (edge.discovery); paho's publish and matcher passed in.
        self.discovery = None if discovery_provider is None else DiscoveryRegistry(
            discovery_provider, device_id, publish=lambda topic, payload: self.client.publish(
                topic, payload, qos=1, retain=True), matches=mqtt.topic_matches_sub)
        self.inbound = InboundRouter(self.topic("cmd/"), settings.home_assistant.status_topic, on_command,
                                     self._home_assistant_online, self.discovery)
        self.published_events = 0
        self._lock = threading.Lock()
        # outbox seq -> paho's MessageInfo. Only the pump thread changes it. Acknowledgement is read from
        # info.is_published() rather than matched by mid inside on_publish: paho calls on_publish while
        # holding its own message lock, and mids wrap around, so matching there is racy.
        self._inflight: dict[int, mqtt.MQTTMessageInfo] = {}
        self._counts_dirty = True
        # The broker may have lost its retained last_item (restarted without persistence): restated once
        # the backlog is out, so it is the newest item and never one older than an event still queued.
        self._last_item_unsaid = True
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._draining = threading.Event()  # shutting down: the backlog still goes out, "online" no more
        self._online_info: mqtt.MQTTMessageInfo | None = None  # the last "online" published
        self._stale_online: mqtt.MQTTMessageInfo | None = None  # an unacknowledged one paho will send again
        self._final_availability = "stopped"
        self._pump: threading.Thread | None = None
        self._subscribe_mid: int | None = None
        self._subscribe_sent_at: float | None = None  # monotonic time of the SUBSCRIBE awaiting its SUBACK
        self._last_stats = 0.0
        self._stats_after_backlog = False
        self.client_id = settings.client_id or f"smartbin-{device_id}"
        self.health = LinkHealth(settings.address, self.client_id)
        self.client = self._make_client(password, config_path)

    def topic(self, name: str) -> str:
        return f"{self.root}/{name}"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connects in the background (also when the broker is down now) and starts the outbox pump."""
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive)
        self.client.loop_start()
        self._pump = threading.Thread(target=self._pump_loop, name="mqtt-outbox", daemon=True)
        self._pump.start()

    def wake(self, counts_changed: bool = False) -> None:
        """Tells the pump there is something new in the outbox (and new counts to publish)."""
        if counts_changed:
            self._counts_dirty = True
        self._wake.set()

    def publish_result(self, reply: dict[str, Any]) -> None:
        """Publishes a command reply on ``cmd/result`` (QoS 1, not retained)."""
        self.client.publish(self.topic("cmd/result"), json.dumps(reply), qos=1)

    def publish_discovery(self) -> None:
        """Publishes the Home Assistant discovery configs (retained) and clears those of entities that are gone."""
        if self.discovery is not None:
            self.discovery.publish_all()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def unacknowledged(self) -> int:
        """Outbox messages not yet acknowledged by the broker (in the store, including those in flight)."""
        return self.store.outbox_size()

    def flush(self, timeout: float) -> bool:
        """Waits until the outbox is empty (only while connected); returns whether it emptied in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                busy = bool(self._inflight)
            if not busy and self.store.outbox_size() == 0 and not self._counts_dirty:
                return True
            if not self.connected and not busy:
                return self.store.outbox_size() == 0
            self._wake.set()
            time.sleep(0.02)
        return False

    def begin_shutdown(self, availability: str = "stopped") -> None:
        """The bin stops sorting: a connection made from now on (to deliver the backlog before ``stop``)
        says ``availability`` at once instead of ``online``, and takes no commands."""
        self._final_availability = availability
        self._draining.set()

    def stop(self, timeout: float = 2.0, availability: str = "stopped") -> None:
        """Publishes the last ``stats`` and ``availability`` (retained; ``offline`` after a fatal error),
        disconnects cleanly, stops."""
        self._final_availability = availability
        self._stopping.set()
        self._wake.set()
        if self._pump is not None:
            self._pump.join(timeout)
        if not self.connected:
            # Stopping right after the start, a connection may be on its way; its "online" must not
            # outlive us, so give it a moment (``_on_connect`` then says ``availability`` itself).
            self._connected.wait(min(timeout, CONNECTING_GRACE_S))
        if self.connected or self.client.is_connected():  # also between CONNACK and SUBACK: say how we stop
            # The retained stats would otherwise show the figures of up to stats_interval_s ago (an
            # outbox that has since been delivered) for as long as the bin is stopped.
            self._mark_acked()  # first, so the last stats count no message the broker has just taken
            if self.stats_provider is not None:
                try:
                    self._publish_stats()
                except Exception as err:  # noqa: BLE001 -- the last figures must not cost the "stopped"
                    log.warning("could not publish the last stats: %s", err)
            info = self._say_final_availability()
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as err:
                log.warning("could not publish %r: %s", availability, err)
            self._mark_acked()
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()

    # -- paho callbacks (paho's network thread) -------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.health.refused(reason_code)
            return
        log.info("MQTT connected to %s", self.settings.address)
        self.health.connected()
        if self._stopping.is_set() or self._draining.is_set():
            # Connected while stopping: say how we stop, never "online" with nobody behind it. While
            # draining the pump still delivers the backlog (and the counts) on this connection.
            # paho re-sends an "online" the broker never acknowledged after this callback: the pump
            # says the final word again once that stale one has gone through.
            online = self._online_info
            self._stale_online = online if online is not None and _still_pending(online) else None
            self._say_final_availability()
            self._counts_dirty = True
            self._ready()
            return
        # Subscribing here (not once after connect) renews the subscriptions after every reconnect.
        subscriptions = [(self.topic("cmd/+"), 1)]
        if self.settings.home_assistant.enabled:
            subscriptions.append((self.settings.home_assistant.status_topic, 1))
        self._online_info = _queued(client.publish(self.topic("availability"), "online", qos=1, retain=True))
        self._last_stats = 0.0  # fresh figures on every (re)connection, not only after stats_interval_s
        self._stats_after_backlog = True  # and again once the backlog is out: "outbox" would say 6 for 30 s
        self.publish_discovery()
        # After publishing, so that every retained config the broker then hands over is either ours
        # (known) or left over from an earlier configuration (cleared).
        if self.discovery is not None:
            subscriptions.extend((pattern, 1) for pattern in self.discovery.patterns())
        self._counts_dirty = True
        self._last_item_unsaid = True
        # "Connected" waits for the SUBACK (_on_subscribe): before it, a command sent to the bin is lost.
        result, self._subscribe_mid = client.subscribe(subscriptions)
        self._subscribe_sent_at = time.monotonic()
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.warning("MQTT subscribe failed (rc=%s); commands will not arrive until the next connection", result)
            self._ready()

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(code) for code in reason_code_list if code.is_failure]
        if refused:
            log.warning("MQTT broker refused %d subscription(s) (%s): check its ACL for %s",
                        len(refused), ", ".join(refused), self.topic("cmd/+"))
        self._ready()

    def _ready(self) -> None:
        """Connected and subscribed (or given up waiting for it): the pump may deliver."""
        self._subscribe_sent_at = None
        self._connected.set()
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._stopping.is_set():
            self.health.disconnected(reason_code)
        self._connected.clear()

    def _on_connect_fail(self, client, userdata) -> None:
        self.health.unreachable()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._wake.set()

    def _on_message(self, client, userdata, message) -> None:
        self.inbound.handle(message.topic, message.payload, message.retain)

    def _home_assistant_online(self) -> None:
        # Home Assistant restarted and forgot non-retained state: tell it everything again.
        self.publish_discovery()
        self.wake(counts_changed=True)

    # -- outbox pump (its own thread) ------------------------------------------------------------

    def _pump_loop(self) -> None:
        while not self._stopping.is_set():
            # paho marks a message published just after on_publish returns; the short timeout catches it.
            self._wake.wait(timeout=0.1)
            self._wake.clear()
            try:
                self._mark_acked()
                if not self.connected:
                    self._give_up_waiting_for_suback()
                    continue
                self._publish_pending()
                self._restate_last_item()
                self._restate_availability_after_a_stale_online()
                if self._counts_dirty:
                    self._counts_dirty = False
                    # As of the last fsync: a retained total never includes an item a power cut could take.
                    self.client.publish(self.topic("counts"), json.dumps(self.store.durable_counts(), sort_keys=True),
                                        qos=1, retain=True)
                self._maybe_publish_stats()
            except Exception as err:  # noqa: BLE001 -- keep pumping; the outbox keeps the data
                self.health.pump_error(err)
                time.sleep(0.5)
        self._mark_acked()

    def _restate_availability_after_a_stale_online(self) -> None:
        stale = self._stale_online
        if stale is not None and not _still_pending(stale):
            self._stale_online = None
            self._say_final_availability()

    def _say_final_availability(self) -> mqtt.MQTTMessageInfo:
        return self.client.publish(self.topic("availability"), self._final_availability, qos=1, retain=True)

    def _give_up_waiting_for_suback(self) -> None:
        # A broker that never answers the subscription must not stop delivery for good: after a while
        # the link counts as connected anyway (commands may then not arrive; the warning says so).
        subscribed_at = self._subscribe_sent_at
        if subscribed_at is None or not self.client.is_connected():
            return
        if time.monotonic() - subscribed_at > SUBACK_TIMEOUT_S:
            log.warning("MQTT broker %s did not confirm the subscriptions within %g s; delivering events anyway, "
                        "commands may not arrive", self.settings.address, SUBACK_TIMEOUT_S)
            self._ready()

    def _publish_pending(self) -> None:
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        newest_item = None
        for message in self.store.pending(limit=room + len(self._inflight)):
            if message.seq in self._inflight:
                continue  # paho re-sends it itself after a reconnect
            if room <= 0 or not self.connected:
                break
            info = _queued(self.client.publish(self.topic(message.topic), message.payload, qos=1))
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("paho refused an outbox message (rc=%s); retrying later", info.rc)
                break
            with self._lock:
                self._inflight[message.seq] = info
            room -= 1
            if message.topic == "item":
                newest_item = message.payload
        if newest_item is not None:
            # A retained copy of the newest event, so a dashboard (re)connecting shows the last item at once
            # instead of nothing until the next one; item itself stays an unretained event stream.
            self.client.publish(self.topic("last_item"), newest_item, qos=1, retain=True)
            self._last_item_unsaid = False

    def _restate_last_item(self) -> None:
        if not self._last_item_unsaid or self.store.outbox_size():
            return  # the backlog's newest item becomes last_item as it goes out
        newest = self.store.newest_item_if_delivered()  # checked again under the store's lock
        if newest is None and self.store.outbox_size():
            return  # an item came in meanwhile: it goes out, and with it last_item
        self._last_item_unsaid = False
        if newest is not None:
            self.client.publish(self.topic("last_item"), json.dumps(newest, separators=(",", ":"), sort_keys=True),
                                qos=1, retain=True)

    def _mark_acked(self) -> None:
        with self._lock:
            done, failed = [], []
            for seq, info in self._inflight.items():
                try:
                    if info.is_published():
                        done.append(seq)
                except (RuntimeError, ValueError):  # paho gave up on it; it is still in the outbox
                    failed.append(seq)
            for seq in failed:
                log.warning("paho dropped outbox message %d; it will be published again", seq)
                del self._inflight[seq]
        if done:
            done.sort()
            # Delete from the store first: a crash between the two lines re-sends (at-least-once), never loses.
            try:
                self.store.mark_delivered(done)
            except StoreError as err:  # a full or failing card: they stay queued and go out again later
                log.warning("could not remove %d delivered events from the outbox: %s", len(done), err)
                return
            with self._lock:
                # stop() and the pump can both get here for the same messages; count each once.
                removed = [seq for seq in done if self._inflight.pop(seq, None) is not None]
                self.published_events += len(removed)

    def _publish_stats(self) -> None:
        # Retained, so a dashboard that (re)connects has figures at once, not after stats_interval_s.
        self.client.publish(self.topic("stats"), json.dumps(self.stats_provider()), qos=0, retain=True)

    def _maybe_publish_stats(self) -> None:
        if self._stats_after_backlog and not self._inflight and self.store.outbox_size() == 0:
            self._stats_after_backlog = False
            self._last_stats = 0.0
        now = time.monotonic()
        if self.stats_provider is None or now - self._last_stats < self.settings.stats_interval_s:
            return
        self._last_stats = now
        self._publish_stats()

    def _make_client(self, password: str | None, config_path: str | None) -> mqtt.Client:
        settings = self.settings
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        client.reconnect_delay_set(settings.reconnect_min_s, settings.reconnect_max_s)
        if settings.username:
            client.username_pw_set(settings.username, password)
        if settings.tls.enabled:
            ca_file, certfile, keyfile = tls_paths(settings.tls, config_path)
            try:
                client.tls_set(ca_certs=ca_file, certfile=certfile, keyfile=keyfile)
            except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
                # A permission error names no file on its own (OpenSSL's does not): name the ones we gave.
                which = f" ({', '.join(str(path) for path in (ca_file, certfile, keyfile) if path)})" \
                    if isinstance(err, PermissionError) else ""
                raise ConfigError([("mqtt.tls", f"cannot use the TLS files{which}: {err}")]) from None
            client.tls_insecure_set(settings.tls.insecure)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client


def _queued(info: mqtt.MQTTMessageInfo) -> mqtt.MQTTMessageInfo:
    """``info``, with a NO_CONN result read as queued.

    The link dropped between our check and the publish: paho keeps a QoS 1 message and sends it
    after the reconnect, but its ``is_published()`` raises for ever on an info whose rc says
    NO_CONN, even once the broker acknowledged it.
    """
    if info.rc == mqtt.MQTT_ERR_NO_CONN:
        info.rc = mqtt.MQTT_ERR_SUCCESS
    return info


def _still_pending(info: mqtt.MQTTMessageInfo) -> bool:
    """True while paho still holds the message to send or re-send; False once acknowledged or dropped."""
    try:
        return not info.is_published()
    except (RuntimeError, ValueError):  # refused or given up: paho will not send it
        return False
