"""A test-side MQTT listener: records every message on a real broker and waits for conditions.

Usage:
    with Listener(mosquitto.port, "smartbin/#") as listener:
        listener.wait_for(lambda: len(listener.payloads("smartbin/bin/item")) == 3)
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from edge.config import MqttConfig
from edge.mqtt import MqttLink
from edge.store import Store
from tests.conftest import Mosquitto


# The device every MqttLink test runs as, and its topic root.
ROOT = "smartbin/bin-t"


def event(i: int) -> dict:
    """A minimal item event, ``id-<i>``, as the daemon records it."""
    return {"id": f"id-{i}", "ts": float(i), "label": "glass", "bin": "glass", "confidence": 0.9}


def make_link(tmp_path, broker, **kw) -> tuple[MqttLink, Store]:
    """An ``MqttLink`` for device ``bin-t`` on ``broker``, quick to reconnect, over a fresh store."""
    store = Store(tmp_path / "state" / "smartbin.db")
    settings = MqttConfig(enabled=True, host="127.0.0.1", port=broker.port, reconnect_min_s=0.1,
                          reconnect_max_s=0.5, stats_interval_s=1)
    return MqttLink(settings, "bin-t", store, **kw), store


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float

    @property
    def text(self) -> str:
        return self.payload.decode()

    def json(self):
        return json.loads(self.payload)


class Listener:
    """Subscribes to ``patterns`` on 127.0.0.1:``port`` and keeps every message.

    With ``session`` (a client id) the broker keeps a persistent session: QoS 1 messages published
    while this listener is away (or before it reconnects after a broker restart) are queued for it.
    """

    def __init__(self, port: int, *patterns: str, session: str | None = None):
        self.port = port
        self.patterns = patterns or ("#",)
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=session or f"test-listener-{id(self)}",
                                  clean_session=session is None)
        self.client.reconnect_delay_set(0.05, 0.2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()

    def __enter__(self) -> Listener:
        self.client.connect("127.0.0.1", self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("listener could not subscribe")
        return self

    def __exit__(self, *exc) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe([(pattern, 1) for pattern in self.patterns])

    def _on_message(self, client, userdata, message):
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), message.retain, time.monotonic()))

    def on(self, topic: str) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def texts(self, topic: str) -> list[str]:
        return [m.text for m in self.on(topic)]

    def payloads(self, topic: str) -> list:
        return [m.json() for m in self.on(topic)]

    def last(self, topic: str):
        found = self.on(topic)
        return found[-1] if found else None

    def publish(self, topic: str, payload, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def ids(self, topic: str) -> list[str]:
        """The ``id`` of every event received on ``topic`` (duplicates included)."""
        return [m.json()["id"] for m in self.on(topic)]

    def wait_for(self, condition, timeout: float = 10.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class PersistentBroker(Mosquitto):
    """A mosquitto that saves its sessions on stop, so persistent listeners survive a broker restart."""

    def __init__(self, workdir: Path, port: int | None = None):
        super().__init__(workdir, port)
        text = self.config.read_text().replace("persistence false\n", f"persistence true\npersistence_location {workdir}/\n")
        self.config.write_text(text)


def retained(port: int, topic: str, timeout: float = 3.0) -> Received | None:
    """The retained message on ``topic`` as a fresh subscriber sees it (``None`` if there is none)."""
    with Listener(port, topic) as listener:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for m in listener.on(topic) if m.retain]
            if found:
                return found[-1]
            time.sleep(0.02)
    return None


class NoSubackBroker:
    """A minimal MQTT 3.1.1 broker that accepts a connection and publishes but never confirms a
    SUBSCRIBE: for the window between CONNACK and SUBACK, which a real broker closes in a moment.
    It records ``(topic, payload, retained)`` of every PUBLISH it receives."""

    def __init__(self):
        self.published: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(1)
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            connection, _ = self._server.accept()
            with connection:
                while header := connection.recv(1):
                    kind, body = header[0] >> 4, self._read_body(connection)
                    if kind == 1:  # CONNECT -> CONNACK
                        connection.sendall(b"\x20\x02\x00\x00")
                    elif kind == 3:  # PUBLISH (-> PUBACK for QoS 1)
                        length = int.from_bytes(body[:2], "big")
                        topic, rest = body[2:2 + length].decode(), body[2 + length:]
                        if (header[0] >> 1) & 3:
                            connection.sendall(b"\x40\x02" + rest[:2])
                            rest = rest[2:]
                        self.published.append((topic, rest, bool(header[0] & 1)))
                    elif kind == 8:  # SUBSCRIBE: never answered
                        self.subscribed.set()
                    elif kind == 12:  # PINGREQ -> PINGRESP
                        connection.sendall(b"\xd0\x00")
                    elif kind == 14:  # DISCONNECT
                        return
        except OSError:
            return

    @staticmethod
    def _read_body(connection) -> bytes:
        length, multiplier = 0, 1
        while True:
            byte = connection.recv(1)[0]
            length += (byte & 127) * multiplier
            multiplier *= 128
            if not byte & 128:
                break
        body = b""
        while len(body) < length:
            chunk = connection.recv(length - len(body))
            if not chunk:
                raise OSError("connection closed")
            body += chunk
        return body

    def close(self) -> None:
        self._server.close()
