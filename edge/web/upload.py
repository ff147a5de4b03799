"""Uploaded photos: read out of an HTTP request body (every failure a clear 4xx), optionally kept.

The standard library's ``cgi`` module is deprecated (and gone in 3.13), so multipart bodies
are split here with plain ``bytes.find`` on the boundary; only each part's small header block
goes through the ``email`` parser, which knows the quoting rules of ``Content-Disposition``.

Usage:
    from edge.web.upload import UploadError, read_body, extract_image
    body = read_body(handler.rfile, handler.headers, limit=10 << 20)
    photo = extract_image(handler.headers.get("Content-Type", ""), body, limit=10 << 20)
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from edge import image_header
from edge.errors import UploadError

FIELD = "image"
# Room for the multipart boundaries and part headers around a file of the full allowed size.
ENVELOPE_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024
# A whole upload must arrive within this: a client trickling a byte every few seconds would otherwise
# hold one of the few upload slots for as long as it likes (the socket timeout is per read).
UPLOAD_DEADLINE_S = 60.0
MAX_TRAILER_LINES = 32
MAX_PART_HEADER_BYTES = 8 * 1024  # a real part header (name, file name, type) is a few hundred bytes
# ISO base media files (HEIC from iPhones, AVIF): "ftyp" at offset 4, then the brand.
_ISO_MEDIA_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF",
                     b"avif": "AVIF", b"avis": "AVIF"}

_HEADER_PARSER = email.parser.BytesHeaderParser(policy=email.policy.HTTP)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Photo:
    """The uploaded file: its bytes and the kind sniffed from them (``jpeg``, ``png``, ...)."""

    data: bytes
    kind: str
    filename: str = ""


def too_large(limit: int) -> UploadError:
    return UploadError(413, f"the photo is larger than the {limit / (1 << 20):g} MB limit")


def read_body(rfile, headers, limit: int, deadline_s: float = UPLOAD_DEADLINE_S,
              go_ahead: Callable[[], None] = lambda: None) -> bytes:
    """Reads a request body of at most ``limit`` bytes of photo plus the multipart envelope.

    The size is checked from ``Content-Length`` before anything is read, and again while
    reading a chunked body, so an oversized upload never fills memory.

    Raises:
        UploadError: 411 without a length, 413 when too large, 400 when the body ends early, 408 when
            it takes longer than ``deadline_s``.
    """
    allowed = limit + ENVELOPE_BYTES
    deadline = time.monotonic() + deadline_s
    codings = [coding.strip().lower() for coding in headers.get("Transfer-Encoding", "").split(",") if coding.strip()]
    if codings == ["chunked"]:
        go_ahead()
        return _read_chunked(rfile, allowed, limit, deadline)
    if codings:  # RFC 9112: a request whose last coding is not chunked has no knowable length
        raise UploadError(400, f"the upload's Transfer-Encoding {', '.join(codings)!r} is not supported "
                               "(send it chunked or with a Content-Length)")
    length_text = headers.get("Content-Length")
    if length_text is None:
        raise UploadError(411, "the upload has no Content-Length")
    length_text = length_text.strip()
    if length_text.startswith("-") and length_text[1:].isascii() and length_text[1:].isdigit():
        raise UploadError(400, "the upload's Content-Length is negative")
    # Digits only: Python's int() would also take "8_927", "+5" or Unicode digits, which HTTP does not.
    if not (length_text.isascii() and length_text.isdigit()):
        raise UploadError(400, "the upload's Content-Length is not a number")
    length = int(length_text)
    if length > allowed:
        raise too_large(limit)
    go_ahead()  # the client may send the body now (HTTP "Expect: 100-continue")
    parts, remaining = [], length
    while remaining:
        chunk = _read(rfile, min(remaining, READ_CHUNK), deadline)
        if not chunk:
            raise UploadError(400, "the upload was cut off before the end")
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise UploadError(408, f"the upload took longer than {UPLOAD_DEADLINE_S:g} s and was cut off")


def _read(rfile, size: int, deadline: float) -> bytes:
    _check_deadline(deadline)
    try:
        # read1: what one receive brings, so the deadline is checked between trickled bytes too
        # (read(size) would block until all of them came).
        return rfile.read1(size)
    except TimeoutError:
        raise UploadError(400, "the upload stalled and was cut off") from None
    except OSError:
        return b""


def _read_line(rfile, deadline: float) -> bytes:
    _check_deadline(deadline)
    try:
        return rfile.readline(1024)
    except TimeoutError:
        raise UploadError(400, "the upload stalled and was cut off") from None
    except OSError:
        return b""


def _read_chunked(rfile, allowed: int, limit: int, deadline: float) -> bytes:
    parts, total = [], 0
    while True:
        size_line = _read_line(rfile, deadline)
        if not size_line:
            raise UploadError(400, "the upload was cut off before the end")
        digits = size_line.split(b";")[0].strip()
        # Hex digits only: int(x, 16) also takes "-1000000" or "0x10", and a negative size would
        # let the running total fall below the limit while the rest of the body piles up in memory.
        if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
            raise UploadError(400, "the upload's chunked encoding is malformed")
        size = int(digits, 16)
        if size == 0:
            # Skip trailer lines up to the blank line ending the body (a few at most: nobody needs many).
            for _ in range(MAX_TRAILER_LINES):
                if _read_line(rfile, deadline) in (b"\r\n", b"\n", b""):
                    return b"".join(parts)
            raise UploadError(400, "the upload's chunked encoding is malformed (too many trailer lines)")
        total += size
        if total > allowed:
            raise too_large(limit)
        chunk = b""
        while len(chunk) < size:
            more = _read(rfile, size - len(chunk), deadline)
            if not more:
                raise UploadError(400, "the upload was cut off before the end")
            chunk += more
        parts.append(chunk)
        _read_line(rfile, deadline)  # the CRLF closing each chunk


def extract_image(content_type: str, body: bytes, limit: int) -> Photo:
    """Finds the photo in a request body and checks that it is a whole image file.

    Accepts ``multipart/form-data`` with a file field named ``image`` (what the page and
    ``curl -F image=@photo.jpg`` send) or a raw ``image/*`` body (``curl --data-binary``).

    Raises:
        UploadError: 415 for a wrong content type or bytes that are no image; 400 for a
            missing field, an empty or truncated file; 413 for a file over ``limit``.
    """
    media_type, params = _parse_content_type(content_type)
    filename = ""
    if media_type == "multipart/form-data":
        boundary = params.get("boundary", "")
        if not boundary:
            raise UploadError(400, "the multipart upload has no boundary")
        try:
            delimiter = boundary.encode("ascii")
        except UnicodeEncodeError:  # RFC 2046: a boundary is 1-70 plain ASCII characters
            raise UploadError(400, "the multipart boundary is not plain ASCII") from None
        data, part_type, filename = _find_field(body, delimiter, FIELD)
    elif media_type.startswith("image/"):
        data, part_type = body, media_type
    else:
        shown = media_type or "no content type"
        raise UploadError(415, f"expected a photo as multipart/form-data (field '{FIELD}'), got {shown}")
    if part_type and not (part_type.startswith("image/") or part_type == "application/octet-stream"):
        raise UploadError(415, f"'{filename or FIELD}' is {part_type}, not an image")
    if not data:
        raise UploadError(400, "the photo is empty (0 bytes)")
    if len(data) > limit:
        raise too_large(limit)
    kind = image_header.sniff(data)
    if kind is None:
        container = _ISO_MEDIA_BRANDS.get(data[8:12]) if data[4:8] == b"ftyp" else None
        if container:
            article = "an" if container[:1] in "AEIOU" else "a"  # an AVIF photo, a HEIC photo
            raise UploadError(415, f"'{filename or FIELD}' is {article} {container} photo, which the bin cannot read: "
                                   f"export it as JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)")
        raise UploadError(415, f"'{filename or FIELD}' is not an image (JPEG, PNG, WebP, BMP or GIF expected)")
    if image_header.is_truncated(data, kind):
        raise UploadError(400, f"'{filename or FIELD}' is truncated: the {kind.upper()} file ends too early")
    return Photo(data, kind, filename)


def _parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    if len(value) > MAX_PART_HEADER_BYTES:
        raise UploadError(400, f"the Content-Type header is longer than {MAX_PART_HEADER_BYTES} bytes")
    message = _HEADER_PARSER.parsebytes(f"Content-Type: {value}\r\n\r\n".encode("latin-1", "replace"))
    media_type = message.get_content_type() if value.strip() else ""
    params = {key.lower(): val for key, val in (message.get_params() or [])[1:]}
    return media_type, params


def _find_field(body: bytes, boundary: bytes, name: str) -> tuple[bytes, str, str]:
    delimiter = b"--" + boundary
    start = body.find(delimiter)
    if start < 0:
        raise UploadError(400, "the multipart upload is malformed (no boundary found)")
    position = start + len(delimiter)
    while True:
        if body.startswith(b"--", position):
            break  # the closing delimiter: no more parts
        header_end = body.find(b"\r\n\r\n", position, position + MAX_PART_HEADER_BYTES + 4)
        if header_end < 0:
            if body.find(b"\r\n\r\n", position) >= 0:
                # The email parser takes time quadratic in a header's parameters: none of that on the bin.
                raise UploadError(400, f"a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes")
            raise UploadError(400, "the upload was cut off inside a part's headers")
        headers = _HEADER_PARSER.parsebytes(body[position:header_end].lstrip(b"\r\n") + b"\r\n\r\n")
        content_start = header_end + 4
        content_end = body.find(b"\r\n" + delimiter, content_start)
        if content_end < 0:
            raise UploadError(400, "the upload was cut off before the end")
        if headers.get_param("name", header="content-disposition") == name:
            filename = headers.get_filename() or ""
            part_type = headers.get_content_type() if headers.get("Content-Type") else ""
            return body[content_start:content_end], part_type, filename
        position = content_end + 2 + len(delimiter)
    raise UploadError(400, f"no file field named '{name}' in the upload")


def keep_upload(folder: Path, photo: Photo, result: dict[str, Any], max_files: int, max_bytes: int) -> None:
    """Stores a photo and its answer in ``folder``, keeping only the newest ``max_files`` uploads and
    at most ``max_bytes`` of them (a padded 1-pixel PNG is as big as the upload limit allows).

    The client's file name is never used for the path: only a UTC time and a random id, so
    no upload can name a file outside ``folder``. A full disk is logged, not raised: the
    visitor still gets the answer.
    """
    # One upload at a time: a second one pruning meanwhile would delete files this one's scan is
    # measuring (a false "could not keep" warning, and this upload's pruning skipped).
    with _KEEPING:
        _keep_upload(folder, photo, result, max_files, max_bytes)


_KEEPING = threading.Lock()


def _keep_upload(folder: Path, photo: Photo, result: dict[str, Any], max_files: int, max_bytes: int) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"
        (folder / f"{stem}.json").write_text(json.dumps(result) + "\n", encoding="utf-8")
        (folder / f"{stem}.{photo.kind}").write_bytes(photo.data)
        # Pruned by their answers (written first, so a photo never lacks one); the new upload is
        # never pruned, even when a clock that stepped back makes its name sort first.
        size: dict[str, int] = {}  # upload name -> bytes of its photo and answer, in one pass over the folder
        files: dict[str, list[str]] = {}
        answered = set()
        with os.scandir(folder) as entries:
            for entry in entries:
                name, _, suffix = entry.name.partition(".")
                size[name] = size.get(name, 0) + entry.stat().st_size
                files.setdefault(name, []).append(entry.path)
                if suffix == "json":
                    answered.add(name)
        kept = sorted(answered - {stem})
        total = sum(size.values())
        while kept and (len(kept) + 1 > max_files or total > max_bytes):
            oldest = kept.pop(0)
            for path in files[oldest]:
                Path(path).unlink(missing_ok=True)
            total -= size[oldest]
    except OSError as err:
        log.warning("could not keep the upload in %s: %s", folder, err)
