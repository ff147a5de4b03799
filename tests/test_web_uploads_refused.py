"""The web page's HTTP API on bad uploads: a clear 4xx for each, and the server keeps serving."""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import numpy as np
import pytest

from edge.errors import UploadError
from edge.web.upload import read_body
from tests.conftest import make_photo
from tests.web_support import (assert_still_serving, classify, jpeg_bytes, multipart, png_bytes, raw_exchange, request,
                               serving, status_and_json, upload)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server(classifier, tmp_path):
    with serving(classifier, tmp_path / "state", max_upload_bytes=200_000) as web:
        yield web


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


@pytest.mark.parametrize("header, message", [
    (b"Content-Length: 8_927", "Content-Length is not a number"),  # int() would take it
    (b"Content-Length: +12", "Content-Length is not a number"),
    (b"Content-Length: -12", "Content-Length is negative"),
    (b"Transfer-Encoding: notchunked", "Transfer-Encoding 'notchunked' is not supported"),
    (b"Transfer-Encoding: chunked, gzip", "Transfer-Encoding 'chunked, gzip' is not supported"),
])
def test_a_body_length_http_does_not_allow_is_400(server, header, message):
    head = (b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + header + b"\r\n\r\n")
    status, result = status_and_json(raw_exchange(server.url, head, b"x" * 12, half_close=True))
    assert status == 400 and message in result["error"]
    assert_still_serving(server)


def test_two_different_content_lengths_are_400_as_a_proxy_may_have_used_the_other(server):
    head = (b"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 12\r\nContent-Length: 5\r\n\r\n")
    status, result = status_and_json(raw_exchange(server.url, head, b"x" * 12))
    assert status == 400 and "two different Content-Length headers" in result["error"]
    assert_still_serving(server)


def test_an_http_0_9_request_which_has_no_host_to_check_is_not_answered(server):
    assert raw_exchange(server.url, b"GET /\r\n\r\n") == b""
    assert_still_serving(server)


@pytest.mark.parametrize("boundary", ["boundary*=utf-8''%E2%82%AC", "boundary=\u00e9\u00e9"])
def test_a_boundary_that_is_not_plain_ascii_is_400_not_a_server_error(server, boundary):
    head = (f"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; {boundary}\r\n"
            f"Content-Length: 12\r\n\r\n").encode("latin-1")
    status, result = status_and_json(raw_exchange(server.url, head, b"x" * 12))
    assert status == 400 and "boundary is not plain ASCII" in result["error"]
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
    assert status == 415 and "is a HEIC photo" in result["error"] and "JPEG" in result["error"]
    avif = b"\x00\x00\x00\x18ftypavif\x00\x00\x00\x00mif1avif" + bytes(64)
    status, _, result = upload(server, avif, "photo.avif", "image/avif")
    assert status == 415 and "is an AVIF photo" in result["error"]


def test_a_file_name_cannot_write_a_line_of_its_own_into_the_log(server, caplog):
    import logging

    # RFC 2231 lets a part's file name carry any byte, a line break included.
    body = (b"--bnd\r\nContent-Disposition: form-data; name=image; filename*=utf-8''x%0AERROR%20edge.daemon"
            b"%3A%20flap%20jammed.txt\r\nContent-Type: text/plain\r\n\r\nnot a photo\r\n--bnd--\r\n")
    with caplog.at_level(logging.INFO, logger="edge.web"):
        status, _, result = classify(server, body, "multipart/form-data; boundary=bnd")
    assert status == 415 and "x\nERROR edge.daemon: flap jammed.txt" in result["error"]  # told as it is
    logged = [record.getMessage() for record in caplog.records if "415" in record.getMessage()]
    assert logged and all("\n" not in line for line in logged)
    assert "x\\nERROR edge.daemon: flap jammed" in logged[0]


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
