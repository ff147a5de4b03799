"""Helpers for the web tests: a served tiny model, multipart bodies, raw HTTP requests and a system Chromium.

Usage:
    body, content_type = multipart(("image", "photo.jpg", "image/jpeg", data))
    status, headers, payload = request(server.url + "api/classify", "POST", body, {"Content-Type": content_type})
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import shutil
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest

from edge.decision import Decider
from edge.imaging import encode_jpeg
from edge.web.server import WebServer
from tests.conftest import TINY_LABELS, free_port, make_photo, write_class_folders

CHROMIUM = os.environ.get("SMARTBIN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The bins the web API tests' tiny three-class model sorts into.
BINS = {"cardboard": "paper", "glass": "glass", "metal": "packaging"}


def serve(classifier, state_dir, **options) -> WebServer:
    server = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6),
                       state_dir=state_dir, **options)
    server.start()
    return server


@contextlib.contextmanager
def serving(classifier, state_dir, **options):
    """A started ``WebServer`` for the ``with`` block (the ``server`` fixture of the web API tests)."""
    web = serve(classifier, state_dir, **options)
    try:
        yield web
    finally:
        web.stop()


def classify(server, body: bytes, content_type: str, headers: dict[str, str] | None = None):
    return request(server.url + "api/classify", "POST", body, {"Content-Type": content_type, **(headers or {})})


def upload(server, data: bytes, filename="photo.jpg", content_type="image/jpeg"):
    body, kind = multipart(("image", filename, content_type, data))
    return classify(server, body, kind)


def assert_still_serving(server):
    status, _, result = upload(server, jpeg_bytes(make_photo(0, size=(96, 128))))
    assert status == 200 and result["label"] == "cardboard"


def jpeg_bytes(rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def multipart(*files: tuple[str, str, str, bytes], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """Builds a multipart/form-data body from ``(name, filename, content_type, data)`` files."""
    boundary = f"----smartbin{uuid.uuid4().hex}"
    chunks = []
    for name, value in (fields or {}).items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, content_type, data in files:
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n")
        chunks.append(head.encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def request(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
            timeout: float = 10.0):
    """Sends one request; returns ``(status, headers, parsed JSON or raw bytes)``."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request(method, parts.path or "/", body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        kind = response.getheader("Content-Type", "")
        payload = json.loads(data) if kind.startswith("application/json") else data
        return response.status, dict(response.getheaders()), payload
    finally:
        connection.close()


def raw_exchange(url: str, head: bytes, body: bytes = b"", half_close: bool = False, timeout: float = 10.0) -> bytes:
    """Writes bytes on a socket as they are (lying headers, cut-off bodies) and returns the raw answer."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def status_and_json(answer: bytes) -> tuple[int, dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@contextlib.contextmanager
def chromium():
    """A headless system Chromium driven by Playwright; skips when either is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install 'playwright>=1.45,<2'")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


class HoldAtEnd:
    """Wraps the replay source so the daemon stays up, idle, after the last photo until stopped."""

    def __init__(self, source):
        self.source = source
        self.finished = threading.Event()
        self.released = threading.Event()

    def read(self, timeout=None):
        frame = self.source.read(timeout=timeout)
        if frame is None:
            self.finished.set()
            self.released.wait(60)
        return frame

    def close(self):
        self.released.set()
        self.source.close()

    def __getattr__(self, name):
        return getattr(self.source, name)


class HeldReplay:
    """A replay daemon of 6 photos (tiny bundle, mock flap, web page on a free port) that stays up after
    its last photo: ``start()`` runs it, ``wait_until_sorted()`` waits for every photo's count."""

    PHOTOS = 6

    def __init__(self, tiny_bundle, tmp_path, device_id: str):
        daemon_module = pytest.importorskip("edge.daemon")
        from edge.config import config_from_dict

        photos = write_class_folders(tmp_path / "photos", per_class=2)
        config = config_from_dict({
            "device": {"id": device_id, "state_dir": str(tmp_path / "state")},
            "model": {"path": str(tiny_bundle), "threads": 1},
            "camera": {"type": "replay", "replay": {"path": str(photos), "fps": 0}},
            "flap": {"pin_factory": "mock", "settle_s": 0},
            "web": {"enabled": True, "port": free_port()},
        })
        self.daemon = daemon_module.Daemon(config)
        self.daemon.start()
        self.daemon.source = self.held = HoldAtEnd(self.daemon.source)
        self.runner = threading.Thread(target=self.daemon.run, name="daemon", daemon=True)

    def start(self) -> None:
        self.runner.start()

    def wait_until_sorted(self) -> dict:
        """The counts once every photo is counted (the last commit runs beside the loop: a few ms behind)."""
        assert self.held.finished.wait(60), "the replay did not finish"
        deadline = time.monotonic() + 5
        while self.daemon.status(recent=False)["counts"]["total"] < self.PHOTOS and time.monotonic() < deadline:
            time.sleep(0.01)
        counts = self.daemon.status(recent=False)["counts"]
        assert counts["total"] == self.PHOTOS
        return counts

    def stop(self) -> None:
        """Stops the daemon (also one never started); the test asserts ``runner.is_alive()`` after."""
        self.daemon.stop("test over")
        if self.runner.ident is not None:
            self.runner.join(timeout=10)
        self.daemon.close()


# ---- a daemon's status, for the live parts of the page -------------------------------------------

BINS = {"cardboard": "paper", "glass": "glass", "metal": "packaging"}


METRICS = {  # the shape the converter writes (docs/converter.md)
    "split": "test", "n": 378, "agreement": 0.9921, "drop_points": 0.26,
    "float": {"accuracy": 0.9603, "macro_f1": 0.955, "per_class_f1": {"cardboard": 0.97, "glass": 0.95, "metal": 0.94}},
    "model": {"accuracy": 0.9577, "macro_f1": 0.951, "per_class_f1": {"cardboard": 0.96, "glass": 0.95, "metal": 0.93}},
    "views": {"views": ["original", "mirrored", "flipped"], "agreement": 0.99,
              "float": {"accuracy": 0.9656, "macro_f1": 0.96, "per_class_f1": {}},
              "model": {"accuracy": 0.963, "macro_f1": 0.957, "per_class_f1": {}}},
}


def fake_status(items: list[tuple[str, str, float]], connected: bool = True) -> dict:
    """A daemon status in the documented shape for items given as (label, bin, confidence), oldest first."""
    labels, bins = {}, {}
    for label, bin_name, _ in items:
        labels[label] = labels.get(label, 0) + 1
        bins[bin_name] = bins.get(bin_name, 0) + 1
    recent = [{
        "id": f"item-{i}", "ts": 1_760_000_000.0 + i, "label": label, "confidence": confidence, "bin": bin_name,
        "rejected": bin_name == "rest", "truth": label if i % 2 else None,
        "thumbnail_jpeg_b64": base64.b64encode(encode_jpeg(make_photo(TINY_LABELS.index(label), (48, 64)),
                                                           max_side=64)).decode(),
    } for i, (label, bin_name, confidence) in enumerate(items)][::-1][:10]
    return {
        "device_id": "bin-7", "started_at": 1_760_000_000.0, "uptime_s": 3725.0,
        "counts": {"labels": labels, "bins": bins, "total": len(items),
                   "since_reset": {"labels": {"glass": 1}, "bins": {"glass": 1}, "total": 1, "reset_at": None}},
        "recent": recent,
        "stats": {"fps": 9.8, "items": len(items), "inference_ms_mean": 41.2, "inference_ms_p90": 47.9,
                  "dropped_frames": 3, "unreadable_frames": 1, "outbox": 0},
        "mqtt": {"enabled": True, "connected": connected, "broker": "127.0.0.1:1883"},
        "model": {"name": "trashnet-test", "path": "/models/trashnet-test", "sha256": "ab" * 32,
                  "backbone": "efficientnet_lite0", "quantization": "int8", "labels": list(TINY_LABELS),
                  "views": ["original", "mirrored", "flipped"], "metrics": METRICS},
    }


class FakeDaemon:
    """Holds a status that a test changes while the page is open."""

    def __init__(self, items):
        self.items = list(items)
        self.fail = False

    def status(self, recent: bool = True) -> dict:
        self.asked_for_recent = recent
        if self.fail:
            raise RuntimeError("store is locked")
        return fake_status(self.items)
