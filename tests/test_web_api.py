"""The web page's HTTP API: a photo in, a verdict out; every bad upload a 4xx, and the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit
from pathlib import Path

import numpy as np
import pytest

from edge.classifier import Classifier
from edge.decision import Decider
from edge.errors import UploadError
from edge.web.server import WebServer
from edge.web.upload import read_body
from tests.conftest import REPO_ROOT, TINY_LABELS, make_photo
from tests.web_support import jpeg_bytes, multipart, png_bytes, raw_exchange, request, status_and_json

pytestmark = pytest.mark.timeout(60)

SHIPPED_MODEL = REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8"
BINS = {"cardboard": "paper", "glass": "glass", "metal": "packaging"}


@pytest.fixture(scope="module")
def classifier(tiny_bundle):
    return Classifier.from_path(tiny_bundle, threads=1)


def serve(classifier, state_dir, **options) -> WebServer:
    server = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6),
                       state_dir=state_dir, **options)
    server.start()
    return server


@pytest.fixture
def server(classifier, tmp_path):
    web = serve(classifier, tmp_path / "state", max_upload_bytes=200_000)
    yield web
    web.stop()


def classify(server, body: bytes, content_type: str, headers: dict[str, str] | None = None):
    return request(server.url + "api/classify", "POST", body, {"Content-Type": content_type, **(headers or {})})


def upload(server, data: bytes, filename="photo.jpg", content_type="image/jpeg"):
    body, kind = multipart(("image", filename, content_type, data))
    return classify(server, body, kind)


def assert_still_serving(server):
    status, _, result = upload(server, jpeg_bytes(make_photo(0, size=(96, 128))))
    assert status == 200 and result["label"] == "cardboard"


# ---- a photo in, a verdict out ---------------------------------------------------------------

@pytest.mark.parametrize("index", range(len(TINY_LABELS)))
def test_a_photo_gets_its_class_bin_probabilities_and_latency(server, index):
    status, _, result = upload(server, jpeg_bytes(make_photo(index, size=(384, 512), seed=7)))

    assert status == 200
    assert result["label"] == TINY_LABELS[index]
    assert result["bin"] == BINS[TINY_LABELS[index]] and result["rejected"] is False
    assert set(result["probabilities"]) == set(TINY_LABELS)
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=0.02)
    assert result["confidence"] == max(result["probabilities"].values())
    assert [entry["label"] for entry in result["top3"]][0] == result["label"]
    assert result["latency_ms"] > 0 and result["server_ms"] >= result["latency_ms"]
    assert result["min_confidence"] == 0.6


def test_png_and_a_raw_image_body_are_accepted_too(server):
    photo = make_photo(1, size=(60, 80))
    assert upload(server, png_bytes(photo), "photo.png", "image/png")[2]["label"] == "glass"
    status, _, result = classify(server, jpeg_bytes(photo), "image/jpeg")
    assert status == 200 and result["label"] == "glass"


def test_an_unsure_photo_goes_to_the_reject_bin(classifier, tmp_path):
    web = WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 1.0), state_dir=tmp_path)
    web.start()
    try:
        status, _, result = upload(web, jpeg_bytes(make_photo(2, size=(64, 64))))
    finally:
        web.stop()
    assert status == 200 and result["rejected"] is True and result["bin"] == "rest"
    assert result["label"] == "metal"


def test_the_shipped_default_model_classifies_a_trashnet_like_photo(tmp_path):
    if not (SHIPPED_MODEL / "manifest.json").is_file():
        pytest.skip(f"{SHIPPED_MODEL.relative_to(REPO_ROOT)} is not there yet")
    shipped = Classifier.from_path(SHIPPED_MODEL, threads=2)
    web = WebServer(port=0, classifier=shipped, decider=Decider({}, "rest", 0.6), state_dir=tmp_path)
    web.start()
    try:
        status, _, result = upload(web, jpeg_bytes(make_photo(1, size=(384, 512))))
    finally:
        web.stop()
    assert status == 200
    assert result["label"] in shipped.labels
    assert set(result["probabilities"]) == set(shipped.labels)


# ---- bad uploads: a clear 4xx each, and the server carries on ---------------------------------

def test_a_file_that_is_not_an_image_is_415(server):
    status, _, result = upload(server, b"hello, I am a text file\n", "notes.txt", "text/plain")
    assert status == 415 and "notes.txt" in result["error"]
    status, _, result = upload(server, b"hello, I am a text file\n", "notes.jpg", "image/jpeg")
    assert status == 415 and "not an image" in result["error"]
    assert_still_serving(server)


def test_an_empty_file_is_400(server):
    status, _, result = upload(server, b"")
    assert status == 400 and "empty" in result["error"]
    assert_still_serving(server)


@pytest.mark.parametrize("encode, kind", [(jpeg_bytes, "JPEG"), (png_bytes, "PNG")])
def test_a_truncated_image_is_400(server, encode, kind):
    data = encode(make_photo(0, size=(96, 128)))
    status, _, result = upload(server, data[: len(data) // 2])
    assert status == 400 and "truncated" in result["error"] and kind in result["error"]
    assert_still_serving(server)


@pytest.mark.parametrize("side", [400, 260], ids=["far-over", "just-over"])
def test_a_photo_over_the_limit_is_413(server, side):
    noisy = np.random.default_rng(0).integers(0, 255, (side, side, 3), np.uint8)
    data = png_bytes(noisy)
    assert len(data) > server.max_upload_bytes
    status, _, result = upload(server, data, "big.png", "image/png")
    assert status == 413 and "limit" in result["error"]
    assert_still_serving(server)


def test_an_oversized_content_length_is_refused_before_the_body_is_read(server):
    # The client announces 1 GB and sends nothing: the answer must come at once, from the header alone.
    head = (b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 1000000000\r\n\r\n")
    started = time.monotonic()
    status, result = status_and_json(raw_exchange(server.url, head))
    assert status == 413 and "limit" in result["error"]
    assert time.monotonic() - started < 5
    assert_still_serving(server)


def test_a_chunked_upload_is_stopped_once_it_passes_the_limit(server):
    head = (b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 100_000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    status, result = status_and_json(raw_exchange(server.url, head, body))
    assert status == 413
    assert_still_serving(server)


def test_a_small_file_that_would_unpack_to_a_huge_image_is_413_before_decoding(server):
    import cv2

    ok, png = cv2.imencode(".png", np.zeros((8000, 6000, 3), np.uint8))  # 48 MP in ~150 kB
    status, _, result = upload(server, png.tobytes(), filename="bomb.png", content_type="image/png")
    assert status == 413 and "6000x8000 pixels (limit 40 megapixels)" in result["error"]
    assert_still_serving(server)


@pytest.mark.parametrize("size_line", [b"-1000000", b"0x10", b"+10", b" "])
def test_a_chunk_size_that_is_not_plain_hex_is_400(server, size_line):
    # A negative size would lower the running total and let an unlimited body into memory.
    head = (b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    body = size_line + b"\r\n" + b"x" * 1000 + b"\r\n0\r\n\r\n"
    status, result = status_and_json(raw_exchange(server.url, head, body))
    assert status == 400 and "chunked encoding is malformed" in result["error"]
    assert_still_serving(server)


def test_a_body_cut_off_before_its_content_length_is_400(server):
    body, kind = multipart(("image", "photo.jpg", "image/jpeg", jpeg_bytes(make_photo(0))))
    head = (f"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    status, result = status_and_json(raw_exchange(server.url, head, body[: len(body) // 2], half_close=True))
    assert status == 400 and "cut off" in result["error"]
    assert_still_serving(server)


def test_a_client_that_asks_before_sending_is_told_to_go_ahead_at_once(server):
    # curl sends "Expect: 100-continue" for bodies over 1 MB and otherwise waits a second for the answer.
    body, kind = multipart(("image", "photo.jpg", "image/jpeg", jpeg_bytes(make_photo(0))))
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall((f"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: {kind}\r\n"
                      f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
        sock.settimeout(0.5)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(10)
        sock.sendall(body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert status_and_json(answer)[0] == 200


def test_an_oversized_upload_that_asks_first_is_refused_without_a_go_ahead(server):
    head = (b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: 999999999\r\nExpect: 100-continue\r\n\r\n")
    answer = raw_exchange(server.url, head)
    assert b"100 Continue" not in answer and status_and_json(answer)[0] == 413


def test_an_upload_trickled_byte_by_byte_is_cut_off_at_the_deadline():
    class Trickle:  # one byte per receive, as a slow client sends them
        def read1(self, size):
            time.sleep(0.01)
            return b"x"

    started = time.monotonic()
    with pytest.raises(UploadError) as caught:
        read_body(Trickle(), {"Content-Length": "100000"}, limit=1 << 20, deadline_s=0.1)
    assert caught.value.status == 408 and time.monotonic() - started < 1


def test_a_chunked_upload_trickled_as_endless_trailer_lines_is_cut_off_too():
    import io

    class TrickledTrailers(io.BytesIO):
        def readline(self, size=-1):
            time.sleep(0.01)
            return super().readline(size) or b"X-Trailer: more\r\n"

    started = time.monotonic()
    with pytest.raises(UploadError) as caught:
        read_body(TrickledTrailers(b"4\r\nabcd\r\n0\r\n"), {"Transfer-Encoding": "chunked"}, limit=1 << 20,
                  deadline_s=0.1)
    assert caught.value.status in (400, 408) and time.monotonic() - started < 1


def test_an_iphone_heic_photo_is_named_with_a_way_out(server):
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
    status, _, result = upload(server, heic, "IMG_0001.HEIC", "image/heic")
    assert status == 415 and "HEIC photo" in result["error"] and "JPEG" in result["error"]


def test_a_multipart_body_without_its_closing_boundary_is_400(server):
    body, kind = multipart(("image", "photo.jpg", "image/jpeg", jpeg_bytes(make_photo(0))))
    status, _, result = classify(server, body[:-40], kind)
    assert status == 400 and "cut off" in result["error"]


def test_a_part_header_swollen_with_parameters_is_refused_at_once(server):
    # The email parser spends time quadratic in a header's parameters: 100 000 of them took 19 s.
    photo = jpeg_bytes(make_photo(0))
    swollen = (b"--bnd\r\nContent-Disposition: form-data; name=image; filename=a.jpg" + b"; a=b" * 5_000
               + b"\r\nContent-Type: image/jpeg\r\n\r\n" + photo + b"\r\n--bnd--\r\n")
    started = time.monotonic()
    status, _, result = classify(server, swollen, "multipart/form-data; boundary=bnd")
    assert status == 400 and "headers are longer than 8192 bytes" in result["error"]
    assert time.monotonic() - started < 2
    status, _, result = classify(server, b"x", "multipart/form-data; boundary=bnd" + "; a=b" * 2000)
    assert status == 400 and "Content-Type header is longer" in result["error"]
    assert_still_serving(server)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded", ""])
def test_a_wrong_content_type_is_415(server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    status, _, result = request(server.url + "api/classify", "POST", b'{"image": 1}', headers)
    assert status == 415 and "multipart/form-data" in result["error"]
    assert_still_serving(server)


def test_an_upload_without_the_image_field_is_400(server):
    body, kind = multipart(("photo", "photo.jpg", "image/jpeg", jpeg_bytes(make_photo(0))), fields={"x": "1"})
    status, _, result = classify(server, body, kind)
    assert status == 400 and "'image'" in result["error"]


def test_unknown_paths_and_methods_get_json_errors(server):
    assert request(server.url + "nope")[0] == 404
    status, headers, result = request(server.url + "api/classify")
    assert status == 405 and headers["Allow"] == "POST" and "POST" in result["error"]
    assert request(server.url + "api/classify", "DELETE")[0] == 405
    assert request(server.url + "static/../server.py")[0] == 404
    status, headers, result = request(server.url, "OPTIONS")
    assert status == 405 and "OPTIONS" in result["error"] and headers["X-Frame-Options"] == "DENY"
    import http.client

    connection = http.client.HTTPConnection(urlsplit(server.url).hostname, urlsplit(server.url).port, timeout=10)
    connection.request("HEAD", "/")
    response = connection.getresponse()
    assert response.status == 405 and response.read() == b"" and response.getheader("X-Frame-Options") == "DENY"
    connection.close()


# ---- what is kept on disk --------------------------------------------------------------------

def test_uploads_are_not_written_anywhere_by_default(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    assert upload(server, jpeg_bytes(make_photo(0)))[0] == 200
    assert sorted(tmp_path.rglob("*")) == before


def test_kept_uploads_go_under_state_dir_uploads_with_names_of_our_own(classifier, tmp_path):
    state = tmp_path / "state"
    web = serve(classifier, state, keep_uploads=True)
    try:
        status, _, result = upload(web, jpeg_bytes(make_photo(2)), filename="../../escape.jpg")
    finally:
        web.stop()
    assert status == 200
    kept = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*") if path.is_file())
    assert [path.parent for path in kept] == [Path("state/uploads")] * 2
    assert {path.suffix for path in kept} == {".jpeg", ".json"}
    assert not any("escape" in path.name for path in kept)


def test_only_the_newest_kept_uploads_stay(tmp_path):
    from edge.web.upload import Photo, keep_upload

    for i in range(4):
        keep_upload(tmp_path / "uploads", Photo(b"\xff\xd8\xff" + bytes([i]), "jpeg"), {"n": i}, max_files=2,
                    max_bytes=1 << 20)
    kept = sorted((tmp_path / "uploads").glob("*.json"))
    assert [json.loads(path.read_text())["n"] for path in kept] == [2, 3]
    assert len(list((tmp_path / "uploads").glob("*.jpeg"))) == 2


def test_kept_uploads_stay_under_their_byte_budget_however_few_they_are(tmp_path):
    from edge.web.upload import Photo, keep_upload

    for i in range(5):  # 40 kB each (a padded 1-pixel PNG is as big as the upload limit allows)
        keep_upload(tmp_path / "uploads", Photo(b"\x89PNG" + bytes(40_000), "png"), {"n": i}, max_files=500,
                    max_bytes=100_000)
    kept = sorted((tmp_path / "uploads").glob("*.json"))
    assert [json.loads(path.read_text())["n"] for path in kept] == [3, 4]
    assert sum(path.stat().st_size for path in (tmp_path / "uploads").iterdir()) <= 100_000


def test_keeping_uploads_without_a_state_dir_is_a_config_error(classifier):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match="web.keep_uploads"):
        WebServer(port=0, classifier=classifier, decider=Decider(BINS, "rest", 0.6), keep_uploads=True)


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


def test_a_busy_port_is_a_clear_error(server, classifier):
    port = int(server.url.rsplit(":", 1)[1].strip("/"))
    other = WebServer(port=port, classifier=classifier, decider=Decider(BINS, "rest", 0.6))
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        other.start()


@pytest.mark.parametrize("host, status", [("localhost:8080", 200), ("127.0.0.1", 200), ("[::1]:80", 200),
                                          ("localhost.", 200), ("bin.localhost:8080", 200),
                                          ("[::ffff:127.0.0.1]:80", 200), ("LOCALHOST", 200),
                                          ("evil.example", 403), ("evil.example:8080", 403), ("10.0.0.5", 403),
                                          ("localhost.evil.example", 403), ("[::ffff:10.0.0.5]", 403)])
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
