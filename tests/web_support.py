"""Helpers for the web tests: a served tiny model, multipart bodies, raw HTTP requests and a system Chromium.

Usage:
    body, content_type = multipart(("image", "photo.jpg", "image/jpeg", data))
    status, headers, payload = request(server.url + "api/classify", "POST", body, {"Content-Type": content_type})
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import threading
import uuid
from urllib.parse import urlsplit

import numpy as np
import pytest

from edge.decision import Decider
from edge.web.server import WebServer
from tests.conftest import make_photo

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
