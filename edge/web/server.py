"""The bin's web page: upload a photo and see its class, and watch the running bin live.

A stdlib ``ThreadingHTTPServer`` in a background thread; no web framework, no build step,
no CDN: the three static files ship inside the package. Routes:

    GET  /                 the page (``static/index.html``, ``app.js``, ``style.css``)
    POST /api/classify     multipart field ``image`` (or a raw ``image/*`` body) -> JSON verdict
    GET  /api/status       the daemon's status as JSON, or the model alone when standalone
    GET  /api/events       the same status as Server-Sent Events, about once a second

Every refusal is a 4xx JSON ``{"error": "..."}``; nothing a client sends stops the server.

Usage:
    server = WebServer(classifier=classifier, decider=decider, port=8080)
    server.start()
    print("open", server.url)
    ...
    server.stop()
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from edge.config import is_loopback
from edge.errors import ConfigError
from edge.web import payloads
from edge.web.upload import UploadError, extract_image, keep_upload, read_body

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
EVENT_INTERVAL_S = 1.0
MAX_EVENT_STREAMS = 8
MAX_KEPT_UPLOADS = 500
# Decoding a 12 MP phone photo takes ~70 MB for a moment; the classifier runs one image at a time
# anyway, so more than two decodes at once would only add memory, not speed.
MAX_CONCURRENT_DECODES = 2
# Uploads being received at once: each holds up to web.max_upload_mb in memory until it is classified.
MAX_CONCURRENT_UPLOADS = 4
BUSY_WAIT_S = 30.0
SOCKET_TIMEOUT_S = 15.0
# After refusing a body unread, read (and drop) this much of it so the client sees the answer
# instead of a reset connection; bigger bodies are cut off.
DRAIN_LIMIT_BYTES = 64 << 20
DRAIN_SECONDS = 3.0
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                                "style-src 'self'; connect-src 'self'; frame-ancestors 'none'"),
}


class WebServer:
    """Serves the page and its JSON API for one classifier and decider.

    Args:
        host: address to listen on; loopback by default because the page has no password.
        port: TCP port; 0 picks a free one (read it back from ``url``).
        classifier: an ``edge.classifier.Classifier`` (thread-safe ``classify``).
        decider: an ``edge.decision.Decider`` mapping a prediction to a bin.
        status_provider: returns the daemon's status dict; ``None`` when running standalone.
        max_upload_bytes: largest photo accepted.
        state_dir: the only folder the server may write to (kept uploads).
        keep_uploads: keep each uploaded photo under ``state_dir/uploads/`` (newest 500).

    Usage:
        server = WebServer(classifier=classifier, decider=decider, port=0)
        server.start(); print(server.url); server.stop()
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8080, classifier, decider,
                 status_provider: Callable[[], dict[str, Any]] | None = None,
                 max_upload_bytes: int = 10 * 1024 * 1024, state_dir: str | os.PathLike | None = None,
                 keep_uploads: bool = False):
        if keep_uploads and state_dir is None:
            raise ConfigError([("web.keep_uploads", "needs device.state_dir to keep uploads in")])
        if max_upload_bytes <= 0:
            raise ConfigError([("web.max_upload_mb", "must be positive")])
        self.host = host
        self.port = port
        self.classifier = classifier
        self.decider = decider
        self.status_provider = status_provider
        self.max_upload_bytes = int(max_upload_bytes)
        self.uploads_dir = Path(state_dir) / "uploads" if keep_uploads else None
        self.static = _load_static()
        self.model = payloads.model_block(classifier)
        self.rules = payloads.decider_block(decider)
        self.stopping = threading.Event()
        self.event_streams = threading.BoundedSemaphore(MAX_EVENT_STREAMS)
        self.decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
        self.upload_slots = threading.BoundedSemaphore(MAX_CONCURRENT_UPLOADS)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Starts listening and serving in a background thread.

        Raises:
            OSError: the address cannot be bound (port in use, unknown host); the message says which.
        """
        if self._httpd is not None:
            return
        server_class = _server_class(self.host)
        try:
            httpd = server_class((self.host, self.port), _Handler)
        except OSError as err:
            raise OSError(err.errno, f"web page cannot listen on {self.host}:{self.port}: "
                                     f"{err.strerror or err}") from None
        httpd.app = self
        _warm_up_decoder()
        self.stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="smartbin-web", daemon=True)
        self._thread.start()
        if not is_loopback(self.host):
            log.warning("web page is reachable from the network at %s and has no password", self.url)
        log.info("web page at %s", self.url)

    def stop(self) -> None:
        """Stops serving; open event streams end within about a second. Safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8080/`` (the real port when started with 0)."""
        port = self._httpd.server_address[1] if self._httpd is not None else self.port
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    # -- what the handler asks for -------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status document: the daemon's (``live``) or the model alone (standalone)."""
        web = {"max_upload_bytes": self.max_upload_bytes, **self.rules}
        if self.status_provider is None:
            return {"live": False, "model": self.model, "web": web}
        status = dict(self.status_provider())
        status.setdefault("model", self.model)
        return {"live": True, **status, "web": web}

    def classify(self, photo) -> dict[str, Any]:
        """Decodes and classifies an uploaded photo; returns the ``/api/classify`` answer."""
        from edge import imaging

        if not self.decode_slots.acquire(timeout=BUSY_WAIT_S):
            raise UploadError(503, "the bin is busy classifying other photos; try again in a moment")
        try:
            start = time.perf_counter()
            try:
                # A phone photo is shrunk while decoding (never held at 12 MP); the model sees no less.
                spec = self.classifier.bundle.manifest.input
                rgb = imaging.decode_image(photo.data, min_side=max(spec.height, spec.width),
                                           max_pixels=imaging.MAX_DECODED_PIXELS)
            except imaging.ImageTooLarge as err:
                raise UploadError(413, f"'{photo.filename or 'image'}' is {err}") from None
            except ValueError:
                raise UploadError(415, f"'{photo.filename or 'image'}' is not a readable image") from None
            prediction = self.classifier.classify(rgb)
            del rgb  # a large photo's pixels should not outlive the decode slot
            decision = self.decider.decide(prediction)
            server_ms = (time.perf_counter() - start) * 1000.0
        finally:
            self.decode_slots.release()
        result = payloads.classification(prediction, decision, server_ms, self.rules["min_confidence"])
        if self.uploads_dir is not None:
            keep_upload(self.uploads_dir, photo, result, MAX_KEPT_UPLOADS)
        return result


class _Handler(BaseHTTPRequestHandler):
    server_version = "smartbin"
    timeout = SOCKET_TIMEOUT_S
    # Headers and body leave in one segment, without Nagle waiting on the client's delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    @property
    def app(self) -> WebServer:
        return self.server.app

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)

    # -- routing --------------------------------------------------------------------------

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path in ("/", "/index.html"):
            self._send_static("index.html")
        elif path.startswith("/static/") and path[len("/static/"):] in self.app.static:
            self._send_static(path[len("/static/"):])
        elif path == "/api/status":
            self._send_status()
        elif path == "/api/events":
            self._stream_events()
        elif path == "/api/classify":
            self._send_json(405, {"error": "use POST with a photo in the field 'image'"}, {"Allow": "POST"})
        else:
            self._send_json(404, {"error": f"no such page: {path}"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        if path != "/api/classify":
            self._refuse_body(404, f"no such endpoint: {path}")
            return
        content_type = self.headers.get("Content-Type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "multipart/form-data" and not media_type.startswith("image/"):
            self._refuse_body(415, f"expected a photo as multipart/form-data (field 'image'), "
                                   f"got {media_type or 'no content type'}")
            return
        if not self.app.upload_slots.acquire(blocking=False):
            self._refuse_body(503, f"{MAX_CONCURRENT_UPLOADS} uploads are already being received; "
                                   f"try again in a moment")
            return
        try:
            self._classify_upload(content_type)
        finally:
            self.app.upload_slots.release()

    def _classify_upload(self, content_type: str) -> None:
        limit = self.app.max_upload_bytes
        try:
            body = read_body(self.rfile, self.headers, limit, go_ahead=self._continue)
        except UploadError as err:
            self._refuse_body(err.status, str(err))
            return
        try:
            photo = extract_image(content_type, body, limit)
            del body  # the photo's bytes are all that is needed now
            result = self.app.classify(photo)
        except UploadError as err:
            self._send_json(err.status, {"error": str(err)})
        except Exception as err:  # a bad model or a bug must not take the page down
            log.exception("classifying an upload failed")
            self._send_json(500, {"error": f"the classifier failed: {err}"})
        else:
            self._send_json(200, result)

    def _continue(self) -> None:
        if self.headers.get("Expect", "").lower() == "100-continue" and self.request_version == "HTTP/1.1":
            # curl asks before sending a body over 1 MB; the stdlib answers only when the server speaks
            # HTTP/1.1, so without this every such upload waited out curl's 1 s Expect timeout.
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def _method_not_allowed(self):
        self._refuse_body(405, f"{self.command} is not supported here", {"Allow": "GET, POST"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _method_not_allowed

    def do_HEAD(self):
        self._send(405, b"", "application/json", {"Allow": "GET, POST"})  # a HEAD answer carries no body

    # -- responses ------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send_json(self, status: int, data: dict[str, Any], extra: dict[str, str] | None = None):
        if status >= 400:
            log.info("%s %s -> %d %s", self.command, self.path, status, data.get("error"))
        self._send(status, json.dumps(data).encode("utf-8"), "application/json", extra)

    def _send_static(self, name: str):
        body, content_type = self.app.static[name]
        self._send(200, body, content_type)

    def _send_status(self):
        try:
            status = self.app.status()
        except Exception as err:  # the daemon's provider failing is not the page's crash
            log.exception("status provider failed")
            self._send_json(503, {"error": f"status unavailable: {err}"})
            return
        self._send_json(200, status)

    def _refuse_body(self, status: int, message: str, extra: dict[str, str] | None = None):
        """Answers without having read the body, then drops the body so the client can read the answer."""
        self.close_connection = True
        self._send_json(status, {"error": message}, extra)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return
        if 0 < length <= DRAIN_LIMIT_BYTES:
            _drain(self.connection, self.rfile, length)

    def finish(self):
        try:
            super().finish()
        except (BrokenPipeError, ConnectionResetError):
            pass  # a closed live page: its last buffered event has nowhere to go

    def _stream_events(self):
        if not self.app.event_streams.acquire(blocking=False):
            self._send_json(503, {"error": "too many live pages open; close one or reload later"},
                            {"Retry-After": "5"})
            return
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"retry: 3000\n\n")
            while not self.app.stopping.is_set():
                try:
                    data = json.dumps(self.app.status())
                    event = f"data: {data}\n\n"
                except Exception as err:
                    log.warning("status provider failed: %s", err)
                    event = f"event: problem\ndata: {json.dumps({'error': f'status unavailable: {err}'})}\n\n"
                self.wfile.write(event.encode("utf-8"))
                self.wfile.flush()
                self.app.stopping.wait(EVENT_INTERVAL_S)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page was closed
        finally:
            self.app.event_streams.release()


def _drain(connection: socket.socket, rfile, length: int) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    remaining = length
    try:
        connection.settimeout(0.5)
        while remaining > 0 and time.monotonic() < deadline:
            chunk = rfile.read1(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
    except OSError:
        pass


def _warm_up_decoder() -> None:
    # The first decode imports OpenCV (~100 ms); pay that at start, not on the first visitor's photo.
    import numpy as np

    from edge import imaging

    imaging.decode_image(imaging.encode_jpeg(np.zeros((8, 8, 3), np.uint8)))


def _load_static() -> dict[str, tuple[bytes, str]]:
    files = {}
    for path in sorted(STATIC_DIR.iterdir()):
        if path.suffix in STATIC_TYPES:
            files[path.name] = (path.read_bytes(), STATIC_TYPES[path.suffix])
    if "index.html" not in files:
        raise FileNotFoundError(f"{STATIC_DIR}: the web page's files are missing (broken install?)")
    return files


def _server_class(host: str) -> type[ThreadingHTTPServer]:
    if ":" not in host:
        return _Server

    class _Server6(_Server):
        address_family = socket.AF_INET6

    return _Server6


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Do not wait on stop for keep-alive or event-stream threads; they end on their own.
    block_on_close = False
    allow_reuse_address = True
    app: WebServer
