"""The web page's review-photo routes (``/api/review``), a part of ``RequestHandler``.

The photos and their moves are ``edge.web.labelling``'s; here is only HTTP: who may ask, reading the
small JSON request, answering.

Usage (``edge.web.handler`` does this):
    class RequestHandler(ReviewRoutes, BaseHTTPRequestHandler): ...
"""

from __future__ import annotations

import json
import logging
from urllib.parse import unquote

from edge.config import is_loopback
from edge.web.hosts import host_name, ip_literal, loopback_name, printable
from edge.web.labelling import LabelError
from edge.web.upload import UploadError, read_body

log = logging.getLogger("edge.web.server")

MAX_REVIEW_REQUEST_BYTES = 4096  # {"label": "..."}


class ReviewRoutes:
    """``GET /api/review``, ``GET /api/review/NAME``, ``POST /api/review/NAME`` for ``RequestHandler``,
    whose ``app``, ``headers``, ``rfile``, ``_send``, ``_send_json`` and ``_refuse_body`` they use."""

    def _rebound_name(self) -> str | None:
        """Why a request may not touch the review photos, or None. On a network bind any name is served,
        so a web site whose name a visitor's browser re-resolves to the bin (DNS rebinding) would pass
        the Origin check with its own name: labelling answers only to requests for an IP address
        (rebinding needs a name), the bin's own host names and ``web.allowed_hosts``."""
        if is_loopback(self.app.host):
            return None  # _foreign_host already allowed only the loopback names
        name = host_name(self.headers.get("Host", ""))
        if not name or ip_literal(name) or loopback_name(name) or name in self.app.allowed_hosts \
                or name in self.app.own_names:
            return None
        return (f"the review photos answer to an IP address, this bin's host name and web.allowed_hosts only, "
                f"not to {name!r} (add it to web.allowed_hosts if it is this bin's name)")

    def _send_review(self, name: str) -> None:
        refusal = self._rebound_name()
        if refusal:
            self._send_json(403, {"error": refusal})
            return
        desk = self.app.desk
        try:
            if desk is None:
                raise LabelError(404, "no review photos: the page runs without a state folder")
            if not name:
                bundle = getattr(self.app.classifier, "bundle", None)
                label_map = bundle.manifest.label_map if bundle is not None else {}
                self._send_json(200, desk.listing(self.app.model["labels"], label_map))
                return
            body = desk.photo(unquote(name)).read_bytes()
        except LabelError as err:
            self._send_json(err.status, {"error": str(err)})
        except OSError as err:
            self._send_json(500, {"error": f"cannot read the review folder: {err.strerror or err}"})
        else:
            self._send(200, body, "image/jpeg")

    def _review_action(self, name: str) -> None:
        """``{"label": "glass"}`` moves review photo ``name`` into labelled/glass/; ``{"discard": true}``
        deletes it."""
        refusal = self._rebound_name()
        if refusal:
            self._refuse_body(403, refusal)
            return
        if self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower() != "application/json":
            self._refuse_body(415, 'expected application/json: {"label": "..."} or {"discard": true}')
            return
        length = self.headers.get("Content-Length", "").strip()
        if length.isascii() and length.isdigit() and int(length) > MAX_REVIEW_REQUEST_BYTES:
            self._refuse_body(413, f"a review request is at most {MAX_REVIEW_REQUEST_BYTES} bytes of JSON")
            return
        try:
            body = read_body(self.rfile, self.headers, MAX_REVIEW_REQUEST_BYTES)
            if len(body) > MAX_REVIEW_REQUEST_BYTES:  # chunked: read_body allows a multipart envelope on top
                raise LabelError(413, f"a review request is at most {MAX_REVIEW_REQUEST_BYTES} bytes of JSON")
            request = json.loads(body)
            desk = self.app.desk
            if desk is None:
                raise LabelError(404, "no review photos: the page runs without a state folder")
            if not isinstance(request, dict) or set(request) not in ({"label"}, {"discard"}):
                raise LabelError(400, 'expected {"label": "..."} or {"discard": true}')
            name = unquote(name)
            if "discard" in request:
                if request["discard"] is not True:
                    raise LabelError(400, 'expected {"discard": true}')
                result = desk.discard(name)
            else:
                result = desk.label(name, request["label"], self.app.model["labels"])
        except UploadError as err:
            self._refuse_body(err.status, str(err))
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." thousands deep
            self._send_json(400, {"error": "the request is not JSON (or nested too deeply)"})
        except LabelError as err:
            self._send_json(err.status, {"error": str(err)})
        except OSError as err:
            self._send_json(500, {"error": f"cannot change the review folder: {err.strerror or err}"})
        else:
            log.info("review photo %s: %s", printable(name), "discarded" if "discard" in request
                     else f"labelled {printable(request['label'])}")
            self._send_json(200, result)
