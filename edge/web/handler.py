"""The web page's HTTP side: routing, uploads, answers and the live event stream (stdlib only).

``RequestHandler`` serves one request of ``edge.web.server.WebServer``'s ``ThreadingHTTPServer``;
what it answers (the status, a classification) comes from that ``WebServer``, so this module is
only about HTTP: methods, headers, refusals that never leave a client hanging.

Usage (``edge.web.server`` does this; the server must also carry a ``head_watch``):
    httpd = _Server(("127.0.0.1", 8080), RequestHandler)
    httpd.app = web_server  # what the handler asks for
"""

from __future__ import annotations

import json
import logging
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

from edge.config import is_loopback
from edge.web import metrics
from edge.web.hosts import host_name, loopback_name, printable
from edge.web.review_routes import ReviewRoutes
from edge.web.upload import UploadError, extract_image, read_body

if TYPE_CHECKING:
    from edge.web.server import WebServer

log = logging.getLogger("edge.web.server")  # the page's logger before the split: journal filters keep working

EVENT_INTERVAL_S = 1.0
# Uploads being received at once: each holds up to web.max_upload_mb in memory until it is classified.
MAX_CONCURRENT_UPLOADS = 4
MAX_UPLOADS_PER_CLIENT = 2  # so one address trickling its uploads cannot hold all four slots
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


class RequestHandler(ReviewRoutes, BaseHTTPRequestHandler):
    """One HTTP request: routes it, reads and checks an upload, answers (JSON, static file or event
    stream). What to answer comes from the ``WebServer`` it serves, ``self.server.app``."""

    server_version = "smartbin"
    timeout = SOCKET_TIMEOUT_S
    # Headers and body leave in one segment, without Nagle waiting on the client's delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    @property
    def app(self) -> "WebServer":
        return self.server.app

    def handle_one_request(self):
        # The request line and headers within one deadline (edge.web.server.HEAD_DEADLINE_S).
        self.server.head_watch.arm(self.connection)
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError):
            # The stdlib flushes after each answer; a live page closed or hidden meanwhile is gone,
            # which is no error worth a traceback in the bin's journal.
            self.close_connection = True
        finally:
            self.server.head_watch.disarm(self.connection)

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        if not self.server.head_watch.disarm(self.connection):
            # Shut while its headers dripped in: what arrived is cut short, never to be answered.
            self.close_connection = True
            return False
        if parsed and self.request_version == "HTTP/0.9":
            # HTTP/0.9 has no headers: no Host to check and no security headers in the answer. No
            # browser sends it; a 0.9 "answer" would be bare, so the connection is closed unanswered.
            self.close_connection = True
            return False
        if parsed and len({value.strip() for value in self.headers.get_all("Content-Length", [])}) > 1:
            # Two lengths: which one a proxy in front of us used is unknown (request smuggling, RFC 9112 6.3).
            self.send_error(400, "the request has two different Content-Length headers")
            return False
        return parsed

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), printable(format % args))

    # -- who may ask ----------------------------------------------------------------------

    def _foreign_host(self) -> str | None:
        """Why a request for another host name is refused, or None. A page bound to this machine only
        answers to its loopback names: a web site whose name a browser re-resolves to 127.0.0.1 (DNS
        rebinding) must not read the bin's status through a visitor's browser or SSH tunnel."""
        if not is_loopback(self.app.host):
            return None  # listening on the network already: any name that reaches it may
        name = host_name(self.headers.get("Host", ""))
        if not name or loopback_name(name) or name in self.app.allowed_hosts:
            return None
        return f"this page answers to localhost and web.allowed_hosts only, not to {name!r}"

    def _foreign_origin(self) -> str | None:
        """Why an upload sent by a page from another site is refused (CSRF), or None. Browsers name
        the page's origin on every cross-site POST; curl and scripts send none."""
        origin = self.headers.get("Origin")
        if origin is None:
            return None
        _, _, netloc = origin.partition("://")
        if netloc and (netloc.lower() == self.headers.get("Host", "").lower()
                       or host_name(netloc) in self.app.allowed_hosts):
            return None
        return f"uploads from a page of another site ({origin}) are refused"

    # -- routing --------------------------------------------------------------------------

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        refusal = self._foreign_host()
        if refusal:
            self._send_json(403, {"error": refusal})
        elif path in ("/", "/index.html"):
            self._send_static("index.html")
        elif path.startswith("/static/") and path[len("/static/"):] in self.app.static:
            self._send_static(path[len("/static/"):])
        elif path == "/api/status":
            self._send_status()
        elif path == "/metrics":
            self._send_metrics()
        elif path == "/api/events":
            self._stream_events()
        elif path == "/api/classify":
            self._send_json(405, {"error": "use POST with a photo in the field 'image'"}, {"Allow": "POST"})
        elif path == "/api/review" or path.startswith("/api/review/"):
            self._send_review(path[len("/api/review/"):])
        else:
            self._send_json(404, {"error": f"no such page: {path}"})

    def do_POST(self):
        path = self.path.split("?", 1)[0]
        refusal = self._foreign_host() or self._foreign_origin()
        if refusal:
            self._refuse_body(403, refusal)
            return
        if path.startswith("/api/review/"):
            self._review_action(path[len("/api/review/"):])
            return
        if path != "/api/classify":
            self._refuse_body(404, f"no such endpoint: {path}")
            return
        content_type = self.headers.get("Content-Type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "multipart/form-data" and not media_type.startswith("image/"):
            self._refuse_body(415, f"expected a photo as multipart/form-data (field 'image'), "
                                   f"got {media_type or 'no content type'}")
            return
        client = self.client_address[0]
        if not self.app.uploads_per_client.enter(client):
            self._refuse_body(503, f"{self.app.uploads_per_client.limit} uploads from this address are already "
                                   f"being received; wait for their answers")
            return
        try:
            if not self.app.upload_slots.acquire(blocking=False):
                self._refuse_body(503, f"{MAX_CONCURRENT_UPLOADS} uploads are already being received; "
                                       f"try again in a moment")
                return
            try:
                self._classify_upload(content_type)
            finally:
                self.app.upload_slots.release()
        finally:
            self.app.uploads_per_client.leave(client)

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

    def version_string(self) -> str:
        return self.server_version  # the Server header need not tell the network which Python runs the bin

    def send_error(self, code, message=None, explain=None):
        """The standard library's own refusals (unknown method, malformed request line, huge headers)
        as JSON with the security headers, like every other answer, instead of its HTML page."""
        self.close_connection = True
        self._send_json(int(code), {"error": message or HTTPStatus(code).phrase})

    def _send_json(self, status: int, data: dict[str, Any], extra: dict[str, str] | None = None):
        if status >= 400:
            # A client chooses the path and the file name an error quotes: escaped, so that neither can
            # start a line of its own (a forged "ERROR edge.daemon: flap jammed") in the bin's journal.
            log.info("%s %s -> %d %s", printable(self.command or ""), printable(getattr(self, "path", "")),
                     status, printable(str(data.get("error"))))
        self._send(status, json.dumps(data).encode("utf-8"), "application/json", extra)

    def _send_static(self, name: str):
        body, content_type = self.app.static[name]
        self._send(200, body, content_type)

    def _send_status(self):
        status = self._status()
        if status is not None:
            self._send_json(200, status)

    def _send_metrics(self):
        # Without the recent items: a scrape every few seconds must not encode their thumbnails.
        status = self._status(recent=False)
        if status is None:
            return
        try:
            body, content_type = metrics.render(status)
        except Exception as err:  # noqa: BLE001 -- a rendering bug is this answer's failure, not the page's
            log.exception("cannot render /metrics")
            self._send_json(500, {"error": f"cannot render the metrics: {err}"})
            return
        self._send(200, body, content_type)

    def _status(self, recent: bool = True) -> dict[str, Any] | None:
        """The status document, or None once a 503 is answered."""
        try:
            return self.app.status(recent=recent)
        except Exception as err:  # the daemon's provider failing is not the page's crash
            log.exception("status provider failed")
            self._send_json(503, {"error": f"status unavailable: {err}"})
            return None

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
