"""The web server's page, status and event streams, and the caps that keep busy or hostile clients at bay."""

from __future__ import annotations

import time

import pytest

from edge.decision import Decider
from edge.web.server import WebServer
from tests.conftest import TINY_LABELS, make_photo
from tests.web_support import (BINS, assert_still_serving, classify, jpeg_bytes, multipart, request, serve,
                               serving, upload)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(classifier, tmp_path):
    with serving(classifier, tmp_path / "state", max_upload_bytes=200_000) as web:
        yield web


# ---- page, status and events -----------------------------------------------------------------

def test_the_page_and_its_assets_come_from_the_package_without_any_cdn(server):
    status, headers, page = request(server.url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'accept="image/*"' in page and b"capture=" not in page  # camera or gallery, the phone offers both
    assert b"http://" not in page and b"https://" not in page
    for asset, kind in (("static/app.js", "text/javascript"), ("static/style.css", "text/css")):
        status, headers, body = request(server.url + asset)
        assert status == 200 and headers["Content-Type"].startswith(kind) and body
        assert b"https://" not in body
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_standalone_status_names_the_model_and_says_it_is_not_live(server, tiny_bundle):
    status, _, result = request(server.url + "api/status")
    assert status == 200 and result["live"] is False
    assert result["model"]["labels"] == list(TINY_LABELS)
    assert result["model"]["name"] == tiny_bundle.name and len(result["model"]["sha256"]) == 64
    assert result["web"]["max_upload_bytes"] == 200_000 and result["web"]["min_confidence"] == 0.6


def test_events_stream_the_status_and_stop_does_not_wait_for_open_streams(server):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1].strip("/")), timeout=5)
    connection.request("GET", "/api/events")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    line = b""
    while not line.startswith(b"data: "):
        line = response.fp.readline()
    assert b'"live": false' in line
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 3
    connection.close()


def test_a_live_page_closed_mid_stream_leaves_no_traceback_in_the_journal(server, capfd):
    import socket

    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    for _ in range(3):  # a tab closed or hidden: the page drops its stream
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            sock.recv(4096)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
    time.sleep(2.5)  # the next event finds the connection gone
    assert_still_serving(server)
    assert "Traceback" not in capfd.readouterr().err


def test_event_streams_are_capped_so_forgotten_tabs_cannot_tie_up_the_bin(classifier, tmp_path, monkeypatch):
    import http.client

    import edge.web.server as web_server

    monkeypatch.setattr(web_server, "MAX_EVENT_STREAMS", 1)
    web = serve(classifier, tmp_path)
    try:
        port = int(web.url.rsplit(":", 1)[1].strip("/"))
        first = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        first.request("GET", "/api/events")
        assert first.getresponse().status == 200
        status, headers, result = request(web.url + "api/events")
        assert status == 503 and headers["Retry-After"] and "too many" in result["error"]
        first.close()
    finally:
        web.stop()


def test_when_every_decode_slot_is_taken_an_upload_gets_503_not_a_hang(server, monkeypatch):
    import edge.web.server as web_server

    monkeypatch.setattr(web_server, "BUSY_WAIT_S", 0.1)
    taken = [server.decode_slots.acquire(timeout=1) for _ in range(web_server.MAX_CONCURRENT_DECODES)]
    try:
        status, _, result = upload(server, jpeg_bytes(make_photo(0)))
    finally:
        for _ in taken:
            server.decode_slots.release()
    assert status == 503 and "busy" in result["error"]
    assert_still_serving(server)


def test_uploads_beyond_the_receiving_limit_get_503_at_once(server):
    from edge.web.server import MAX_CONCURRENT_UPLOADS

    for _ in range(MAX_CONCURRENT_UPLOADS):  # that many slow clients are still sending their photos
        server.upload_slots.acquire()
    try:
        started = time.monotonic()
        status, _, result = upload(server, jpeg_bytes(make_photo(0, size=(96, 128))))
        assert status == 503 and "uploads are already being received" in result["error"]
        assert time.monotonic() - started < 5
    finally:
        for _ in range(MAX_CONCURRENT_UPLOADS):
            server.upload_slots.release()
    assert_still_serving(server)


def test_one_address_trickling_uploads_cannot_take_every_upload_slot(server):
    from edge.web.handler import MAX_UPLOADS_PER_CLIENT

    for _ in range(MAX_UPLOADS_PER_CLIENT):  # this address is still sending two photos, byte by byte
        server.uploads_per_client.enter("127.0.0.1")
    try:
        status, _, result = upload(server, jpeg_bytes(make_photo(0, size=(96, 128))))
        assert status == 503 and "2 uploads from this address are already being received" in result["error"]
        assert server.upload_slots.acquire(blocking=False)  # the other visitors' slots are all free
        server.upload_slots.release()
    finally:
        for _ in range(MAX_UPLOADS_PER_CLIENT):
            server.uploads_per_client.leave("127.0.0.1")
    assert_still_serving(server)


def test_per_client_counts_go_back_to_nothing_when_everything_is_given_back():
    from edge.web.limits import PerClient

    held = PerClient(2)
    assert held.enter("a") and held.enter("a") and not held.enter("a") and held.enter("b")
    for client in ("a", "a", "b"):
        held.leave(client)
    assert held._held == {}  # no address lingers, however many come and go


def test_a_page_on_every_address_warns_without_naming_a_loopback_url(classifier, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="edge.web"):
        with serving(classifier, tmp_path / "state", host="0.0.0.0"):
            pass
    warning = next(record.getMessage() for record in caplog.records if "no password" in record.getMessage())
    assert "on port" in warning and "of every address of this machine" in warning and "127.0.0.1" not in warning


def test_a_busy_port_is_a_clear_error(server, classifier):
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    other = WebServer(port=port, classifier=classifier, decider=Decider(BINS, "rest", 0.6))
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        other.start()


@pytest.mark.parametrize("host, status", [("localhost:8080", 200), ("127.0.0.1", 200), ("[::1]:80", 200),
                                          ("localhost.", 200), ("bin.localhost:8080", 200),
                                          ("[::ffff:127.0.0.1]:80", 200), ("LOCALHOST", 200),
                                          ("evil.example", 403), ("evil.example:8080", 403), ("10.0.0.5", 403),
                                          ("localhost.evil.example", 403), ("[::ffff:10.0.0.5]", 403),
                                          ("[::1]evil.example", 403), ("localhost:evil.example", 403)])
def test_a_page_bound_to_this_machine_answers_to_its_loopback_names_only(server, host, status):
    """DNS rebinding: a site whose name re-resolves to 127.0.0.1 must not read the bin's status."""
    got, _, result = request(server.url + "api/status", "GET", None, {"Host": host})
    assert got == status
    if status == 403:
        assert "answers to localhost and web.allowed_hosts only" in result["error"]


def test_a_name_in_allowed_hosts_is_answered_and_its_pages_may_upload(classifier, tmp_path):
    """A reverse proxy serving the page as bin.example.org passes that Host on."""
    server = serve(classifier, tmp_path / "state", allowed_hosts=["Bin.Example.org"])
    try:
        status, _, _ = request(server.url + "api/status", "GET", None, {"Host": "bin.example.org"})
        assert status == 200
        body, kind = multipart(("image", "photo.jpg", "image/jpeg", jpeg_bytes(make_photo(0))))
        status, _, _ = classify(server, body, kind, {"Host": "127.0.0.1", "Origin": "https://bin.example.org"})
        assert status == 200
        status, _, _ = classify(server, body, kind, {"Origin": "https://evil.example"})
        assert status == 403
    finally:
        server.stop()


def test_an_upload_sent_by_a_page_of_another_site_is_refused(server):
    """CSRF: a cross-site form POST is a 'simple' request that browsers send without asking first."""
    body, kind = multipart(("image", "photo.jpg", "image/jpeg", jpeg_bytes(make_photo(0))))
    own = server.url.rstrip("/")
    status, _, _ = classify(server, body, kind, {"Origin": own})
    assert status == 200
    status, _, result = classify(server, body, kind, {"Origin": "http://evil.example"})
    assert status == 403 and "another site" in result["error"]
    status, _, _ = classify(server, body, kind, {"Origin": "null"})  # a sandboxed frame or a file:// page
    assert status == 403
    assert_still_serving(server)


def test_connections_beyond_the_cap_are_dropped_and_the_page_still_answers_once_they_go(classifier, tmp_path,
                                                                                         monkeypatch):
    import socket
    from urllib.parse import urlsplit

    monkeypatch.setattr("edge.web.server.MAX_CONNECTIONS", 3)
    server = serve(classifier, tmp_path / "state")
    try:
        address = urlsplit(server.url).hostname, urlsplit(server.url).port
        idle = [socket.create_connection(address) for _ in range(3)]  # say nothing: hold their slots
        time.sleep(0.3)
        extra = socket.create_connection(address)
        extra.settimeout(5)
        assert extra.recv(1) == b""  # closed at once, no thread for it
        for sock in idle + [extra]:
            sock.close()
        time.sleep(0.3)
        assert_still_serving(server)
    finally:
        server.stop()


def test_one_address_holding_idle_connections_cannot_lock_other_visitors_out(classifier, tmp_path, monkeypatch):
    import socket
    from urllib.parse import urlsplit

    monkeypatch.setattr("edge.web.server.MAX_CONNECTIONS_PER_CLIENT", 3)
    server = serve(classifier, tmp_path / "state")
    try:
        address = urlsplit(server.url).hostname, urlsplit(server.url).port
        hog = [socket.create_connection(address, source_address=("127.0.0.2", 0)) for _ in range(3)]
        time.sleep(0.3)
        extra = socket.create_connection(address, source_address=("127.0.0.2", 0))
        extra.settimeout(5)
        assert extra.recv(1) == b""  # the hog's fourth is dropped at once...
        assert_still_serving(server)  # ...while another address (127.0.0.1) is served
        for sock in hog + [extra]:
            sock.close()
        time.sleep(0.3)
        again = socket.create_connection(address, source_address=("127.0.0.2", 0))
        again.sendall(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        again.settimeout(5)
        assert again.recv(12).startswith(b"HTTP/1.")  # its slots came back when it let go
        again.close()
    finally:
        server.stop()


def test_methods_the_page_does_not_know_get_json_with_the_security_headers(server):
    status, headers, result = request(server.url + "api/status", "FOO")
    assert status == 501 and "error" in result
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Server"] == "smartbin"
    assert_still_serving(server)


def test_a_request_head_dripping_in_byte_by_byte_is_cut_off_at_its_deadline(classifier, tmp_path, monkeypatch):
    import socket
    from urllib.parse import urlsplit

    monkeypatch.setattr("edge.web.server.HEAD_DEADLINE_S", 1.0)
    monkeypatch.setattr("edge.web.server.HEAD_WATCH_INTERVAL_S", 0.1)
    server = serve(classifier, tmp_path / "state")
    try:
        address = urlsplit(server.url).hostname, urlsplit(server.url).port
        slow = socket.create_connection(address)
        slow.settimeout(0.4)  # each header line comes well within the per-read timeout
        started, answer = time.monotonic(), b"not closed"
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\n")
        for index in range(20):
            try:
                slow.sendall(b"X-Drip-%d: 1\r\n" % index)
                answer = slow.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                answer = b""
            break
        assert answer == b""  # shut, and nothing answered for the half-sent request
        assert time.monotonic() - started < 3.0
        slow.close()
        assert_still_serving(server)  # a request that comes in time is answered as ever
    finally:
        server.stop()
