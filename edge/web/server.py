"""The bin's web page: upload a photo and see its class, and watch the running bin live.

A stdlib ``ThreadingHTTPServer`` in a background thread; no web framework, no build step,
no CDN: the static files ship inside the package. Routes:

    GET  /                 the page (``static/index.html``, ``app.js``, ``style.css``)
    POST /api/classify     multipart field ``image`` (or a raw ``image/*`` body) -> JSON verdict
    GET  /api/status       the daemon's status as JSON, or the model alone when standalone
    GET  /api/events       the same status as Server-Sent Events, about once a second
    GET  /api/review       the bin's review photos (newest first) with the model's guesses
    GET  /api/review/NAME  one review photo (JPEG)
    POST /api/review/NAME  ``{"label": "glass"}`` moves it to labelled/glass/, ``{"discard": true}`` deletes it

Every refusal is a 4xx JSON ``{"error": "..."}``; nothing a client sends stops the server.

Usage:
    server = WebServer(classifier=classifier, decider=decider, port=8080)
    server.start()
    print("open", server.url)
    ...
    server.stop()
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from edge.config import is_loopback
from edge.errors import ConfigError
from edge.web import payloads
from edge.web.handler import MAX_CONCURRENT_UPLOADS, MAX_UPLOADS_PER_CLIENT, RequestHandler
from edge.web.labelling import LabelDesk
from edge.web.limits import PerClient
from edge.web.upload import UploadError, keep_upload

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
MAX_EVENT_STREAMS = 8
MAX_KEPT_UPLOADS = 500
MAX_CONNECTIONS = 64  # browsers open about six per page; a few operators at once fit easily
# One address may hold a quarter of them: a single host on the LAN (a script, a scanner) holding
# idle connections open must not lock every operator out.
MAX_CONNECTIONS_PER_CLIENT = 16
# A request line and its headers must all arrive within this: the per-read timeout alone lets a
# client that sends a byte every few seconds hold a connection slot for ever, and 64 such clients
# would shut every operator out.
HEAD_DEADLINE_S = 20.0
HEAD_WATCH_INTERVAL_S = 1.0
MAX_KEPT_UPLOAD_BYTES = 200 << 20  # on the card that also holds the counts: a full disk stops the bin
# Decoding a 12 MP phone photo takes ~70 MB for a moment; the classifier runs one image at a time
# anyway, so more than two decodes at once would only add memory, not speed.
MAX_CONCURRENT_DECODES = 2
BUSY_WAIT_S = 30.0


class WebServer:
    """Serves the page and its JSON API for one classifier and decider.

    Args:
        host: address to listen on; loopback by default because the page has no password.
        port: TCP port; 0 picks a free one (read it back from ``url``).
        classifier: an ``edge.classifier.Classifier`` (thread-safe ``classify``).
        decider: an ``edge.decision.Decider`` mapping a prediction to a bin.
        status_provider: ``provider(recent=True)`` returns the daemon's status dict (``recent=False``: without
            its recent items); ``None`` when running standalone.
        max_upload_bytes: largest photo accepted.
        state_dir: the only folder the server may write to (kept uploads, labelled review photos).
        keep_uploads: keep each uploaded photo under ``state_dir/uploads/`` (newest 500, at most 200 MB).
        allowed_hosts: other host names the page answers to (a reverse proxy's), besides its own.
        device_id: this bin's ``device.id``, shown standalone (a daemon's status carries its own).

    Usage:
        server = WebServer(classifier=classifier, decider=decider, port=0)
        server.start(); print(server.url); server.stop()
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8080, classifier, decider,
                 status_provider: Callable[..., dict[str, Any]] | None = None,
                 max_upload_bytes: int = 10 * 1024 * 1024, state_dir: str | os.PathLike | None = None,
                 keep_uploads: bool = False, allowed_hosts: list[str] | tuple[str, ...] = (),
                 device_id: str | None = None):
        if keep_uploads and state_dir is None:
            raise ConfigError([("web.keep_uploads", "needs device.state_dir to keep uploads in")])
        if max_upload_bytes <= 0:
            raise ConfigError([("web.max_upload_mb", "must be positive")])
        self.host = host
        self.port = port
        self.allowed_hosts = frozenset(name.lower() for name in allowed_hosts)
        self.own_names = _own_names()  # what this machine is called on the network (bin.local, ...)
        self.classifier = classifier
        self.decider = decider
        self.status_provider = status_provider
        self.device_id = device_id
        self.max_upload_bytes = int(max_upload_bytes)
        self.uploads_dir = Path(state_dir) / "uploads" if keep_uploads else None
        self.desk = LabelDesk(state_dir) if state_dir is not None else None
        self.static = _load_static()
        self.model = payloads.model_block(classifier)
        self.rules = payloads.decider_block(decider)
        self.stopping = threading.Event()
        self.event_streams = threading.BoundedSemaphore(MAX_EVENT_STREAMS)
        self.decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
        self.upload_slots = threading.BoundedSemaphore(MAX_CONCURRENT_UPLOADS)
        self.uploads_per_client = PerClient(MAX_UPLOADS_PER_CLIENT)
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
            httpd = server_class((self.host, self.port), RequestHandler)
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
            # self.url names this machine's own address for a wildcard bind; the network uses the host's.
            where = f"on port {httpd.server_address[1]} of every address of this machine" if self.host in ("", "0.0.0.0", "::") \
                else f"at {self.url}"
            log.warning("web page is reachable from the network %s and has no password", where)
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

    def status(self, recent: bool = True) -> dict[str, Any]:
        """The status document: the daemon's (``live``) or the model alone (standalone); ``recent=False``
        asks the daemon to leave out its recent items (and so not encode their thumbnails)."""
        web = {"max_upload_bytes": self.max_upload_bytes, **self.rules}
        if self.status_provider is None:
            # The device id too, so a Prometheus scraping the standalone page labels it as the bin.
            own = {"device_id": self.device_id} if self.device_id else {}
            return {"live": False, **own, "model": self.model, "web": web}
        status = dict(self.status_provider(recent=recent))
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
            prediction = self.classifier.classify(rgb, background=True)  # an item on the tray goes first
            del rgb  # a large photo's pixels should not outlive the decode slot
            decision = self.decider.decide(prediction)
            server_ms = (time.perf_counter() - start) * 1000.0
        finally:
            self.decode_slots.release()
        result = payloads.classification(prediction, decision, server_ms, self.rules["min_confidence"])
        if self.uploads_dir is not None:
            keep_upload(self.uploads_dir, photo, result, MAX_KEPT_UPLOADS, MAX_KEPT_UPLOAD_BYTES)
        return result


def _warm_up_decoder() -> None:
    # The first decode imports OpenCV (~100 ms); pay that at start, not on the first visitor's photo.
    import numpy as np

    from edge import imaging

    imaging.decode_image(imaging.encode_jpeg(np.zeros((8, 8, 3), np.uint8)))


def _own_names() -> frozenset[str]:
    name = socket.gethostname().lower().rstrip(".")
    return frozenset({name, f"{name.split('.')[0]}.local", socket.getfqdn().lower().rstrip(".")})


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

    def __init__(self, *args, **kwargs):
        # One thread and one descriptor per connection: capped, so slow clients cannot take every file
        # descriptor of the daemon (whose store, camera and MQTT need them too).
        self.connection_slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.connections_per_client = PerClient(MAX_CONNECTIONS_PER_CLIENT)
        self.head_watch = HeadWatch(HEAD_DEADLINE_S, HEAD_WATCH_INTERVAL_S)
        super().__init__(*args, **kwargs)

    def server_close(self):
        self.head_watch.stop()
        super().server_close()

    def get_request(self):
        try:
            return super().get_request()
        except OSError as err:
            if err.errno in (errno.EMFILE, errno.ENFILE):
                # The listening socket stays readable: without a pause the accept loop spins a core.
                log.warning("web page: out of file descriptors, not accepting for a moment")
                time.sleep(0.5)
            raise

    def process_request(self, request, client_address):
        client = client_address[0]
        if not self.connections_per_client.enter(client):
            log.debug("web page: %d connections open from %s, dropping one", MAX_CONNECTIONS_PER_CLIENT, client)
            self.shutdown_request(request)
            return
        if not self.connection_slots.acquire(blocking=False):
            self.connections_per_client.leave(client)
            log.debug("web page: %d connections open, dropping one from %s", MAX_CONNECTIONS, client)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connection_slots.release()  # its thread never started
            self.connections_per_client.leave(client)
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connection_slots.release()
            self.connections_per_client.leave(client_address[0])


class HeadWatch:
    """Shuts connections whose request head is not in by its deadline, one thread for all of them.

    Usage:
        watch.arm(connection)              # before reading a request line
        on_time = watch.disarm(connection)  # after its headers: False if it was shut meanwhile
    """

    def __init__(self, seconds: float, interval: float):
        self.seconds, self.interval = seconds, interval
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def arm(self, connection: socket.socket) -> None:
        with self._lock:
            self._deadlines[connection] = time.monotonic() + self.seconds
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="web-head-watch", daemon=True)
                self._thread.start()

    def disarm(self, connection: socket.socket) -> bool:
        """Stops watching; True when the head came in time (the connection was not shut)."""
        with self._lock:
            return self._deadlines.pop(connection, None) is not None

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self.interval):
            now = time.monotonic()
            with self._lock:
                late = [connection for connection, deadline in self._deadlines.items() if deadline <= now]
                for connection in late:
                    del self._deadlines[connection]
            for connection in late:
                try:
                    # The handler's blocked read returns at once with end of file; the handler closes it.
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already gone
                log.debug("web page: a request's head took over %.0f s, connection shut", self.seconds)
