"""What an encoded image's header says without decoding it: its size, whether it may be
transparent, and its EXIF orientation (JPEG, PNG, GIF, BMP, WebP).

The decoder (``edge.imaging``) reads these first: the size to refuse decompression bombs
before any memory is spent, transparency and orientation to show a cut-out photo as the
camera would see it.

Usage:
    from edge import image_header
    size = image_header.image_size(data)  # (height, width), or None when the header does not say
"""

from __future__ import annotations

import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (PNG_SIGNATURE, "png"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)
EXIF_ORIENTATION_TAG = 0x0112


def sniff(data: bytes) -> str | None:
    """Names the image format from the file's first bytes, or ``None`` when it is none we read."""
    for signature, kind in _SIGNATURES:
        if data.startswith(signature):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def is_truncated(data: bytes, kind: str) -> bool:
    """True when a JPEG, PNG or WebP ends before its picture does (OpenCV would decode the torn file
    silently, with a grey or missing part).

    A JPEG is whole when an end marker follows the start of its scan data anywhere: phones append
    data after it (a Motion Photo's video, Samsung's trailer), and an embedded thumbnail's own end
    marker comes before the scan. A PNG is whole when its chunks reach ``IEND``.
    """
    if kind == "jpeg":
        scan = _jpeg_scan_start(data)
        return scan is None or data.find(b"\xff\xd9", scan) < 0
    if kind == "png":
        return not any(chunk == b"IEND" for chunk, _, _ in _png_chunks(data))
    if kind == "webp":
        return len(data) < 8 + int.from_bytes(data[4:8], "little")
    return False


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG, PNG, GIF, BMP or WebP header without decoding; None if unknown."""
    if data[:8] == PNG_SIGNATURE and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[8:10], "little"), int.from_bytes(data[6:8], "little")
    if data[:2] == b"BM" and len(data) >= 26:
        if int.from_bytes(data[14:18], "little") == 12:  # OS/2's BITMAPCOREHEADER: 16-bit sides
            return int.from_bytes(data[20:22], "little"), int.from_bytes(data[18:20], "little")
        width = int.from_bytes(data[18:22], "little", signed=True)
        height = int.from_bytes(data[22:26], "little", signed=True)  # negative: stored top-down
        return abs(height), abs(width)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[27:30], "little"), 1 + int.from_bytes(data[24:27], "little")
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + ((bits >> 14) & 0x3FFF), 1 + (bits & 0x3FFF)
        if chunk == b"VP8 ":
            return int.from_bytes(data[28:30], "little") & 0x3FFF, int.from_bytes(data[26:28], "little") & 0x3FFF
        return None
    return jpeg_size(data)


# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}


def _jpeg_segments(data: bytes):
    """(marker, position) of each JPEG segment that has a length, in file order, up to the first
    scan or end marker (both yielded); bytes libjpeg skips are skipped here too."""
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            # Stray bytes between segments: libjpeg skips them with a warning and decodes on, so
            # must this, or a picture's size would go unread (and unchecked) while OpenCV decodes it.
            position = data.find(b"\xff", position)
            if position < 0:
                return
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0x00:  # FF 00 is no marker: libjpeg skips it as junk, so it must not be read as a length
            position += 2
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        yield marker, position
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in (0xD9, 0xDA) or length < 2:  # end of image, or scan data: no more headers
            return
        position += 2 + length


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header without decoding it; None if not a readable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    for marker, position in _jpeg_segments(data):
        if marker in _SOF_MARKERS:
            length = int.from_bytes(data[position + 2:position + 4], "big")
            if length < 7 or position + 9 > len(data):
                return None
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return (height, width) if height and width else None
    return None


# Progressive frames (SOF2, SOF6, SOF10, SOF14): libjpeg keeps every DCT coefficient of the whole
# picture in memory until the last scan, at full size, whatever scale it is asked to decode at. So
# does a sequential JPEG whose colour channels come in separate scans.
_PROGRESSIVE_SOF = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def jpeg_coefficient_bytes(data: bytes) -> int:
    """The memory libjpeg holds for a JPEG's coefficients when it must buffer all of them
    (progressive, or channels in separate scans): 2 bytes each, every component at its sampled
    size as libjpeg allocates it. 0 for a JPEG decoded a band at a time, or anything else.

    A 2 MB progressive 16000x12000 JPEG takes 1.1 GB this way (4:4:4; 576 MB at 4:2:0) even when
    decoded at 1/8 scale.
    """
    if data[:2] != b"\xff\xd8":
        return 0
    frame = None
    for marker, position in _jpeg_segments(data):
        if marker in _SOF_MARKERS and frame is None:
            frame = marker, position
        elif marker == 0xDA and frame is not None:
            marker, at = frame
            if at + 10 > len(data) or position + 5 > len(data):
                return 0
            components = data[at + 9]
            if marker not in _PROGRESSIVE_SOF and data[position + 4] >= components:
                return 0  # one interleaved scan: decoded a band at a time
            return _coefficient_bytes(data, at, components)
    return 0


def jpeg_is_progressive(data: bytes) -> bool:
    """Whether a JPEG's frame is progressive (for messages; ``jpeg_coefficient_bytes`` decides)."""
    return data[:2] == b"\xff\xd8" and next(
        (marker in _PROGRESSIVE_SOF for marker, _ in _jpeg_segments(data) if marker in _SOF_MARKERS), False)


def _coefficient_bytes(data: bytes, at: int, components: int) -> int:
    height = int.from_bytes(data[at + 5:at + 7], "big")
    width = int.from_bytes(data[at + 7:at + 9], "big")
    factors = [(max(data[i] >> 4, 1), max(data[i] & 0x0F, 1)) for i in range(at + 11, at + 11 + 3 * components, 3)
               if i < len(data)]
    if not factors:
        return 0
    most_h, most_v = max(h for h, _ in factors), max(v for _, v in factors)
    blocks = 0
    for h, v in factors:  # jdcoefct.c: width/height in blocks, rounded up to the sampling factor
        across, down = -(-width * h // (most_h * 8)), -(-height * v // (most_v * 8))
        blocks += -(-across // h) * h * -(-down // v) * v
    return blocks * 64 * 2


def _jpeg_scan_start(data: bytes) -> int | None:
    """Where a JPEG's first start-of-scan segment begins; None if the segments end before one."""
    return next((position for marker, position in _jpeg_segments(data) if marker == 0xDA), None)


def _png_chunks(data: bytes, checked: bool = False):
    """(type, start, end) of each PNG chunk's payload, in file order, up to IEND or a truncation;
    ``checked``: only chunks whose CRC is right (libpng drops an ancillary chunk whose CRC is wrong)."""
    position = len(PNG_SIGNATURE)
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = bytes(data[position + 4:position + 8])
        start = position + 8
        if start + length + 4 > len(data):
            return
        crc = int.from_bytes(data[start + length:start + length + 4], "big")
        if not checked or zlib.crc32(data[position + 4:start + length]) == crc:
            yield kind, start, start + length
        if kind == b"IEND":
            return
        position = start + length + 4  # the CRC


def _webp_chunks(data: bytes):
    """(fourcc, start, end) of each RIFF chunk's payload in a WebP file."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return
    position = 12
    while position + 8 <= len(data):
        size = int.from_bytes(data[position + 4:position + 8], "little")
        start = position + 8
        if start + size > len(data):
            return
        yield bytes(data[position:position + 4]), start, start + size
        position = start + size + (size & 1)  # payloads are padded to an even length


def may_be_transparent(data: bytes) -> bool:
    """Whether a PNG or WebP says it carries transparency (an alpha channel, or PNG's ``tRNS``).

    Other formats are taken as opaque: a 32-bit BMP's fourth byte is as often padding as alpha.
    """
    if data[:8] == PNG_SIGNATURE:
        colour_type = data[25] if len(data) > 25 else 0
        if colour_type in (4, 6):  # grey + alpha, RGB + alpha
            return True
        # A tRNS chunk on a palette or RGB picture: OpenCV gives it an alpha channel. A grey one's
        # colour key it ignores (one channel comes back), so such a picture is taken as opaque.
        if colour_type not in (2, 3):
            return False
        for kind, _, _ in _png_chunks(data):
            if kind == b"tRNS":
                return True
            if kind == b"IDAT":  # tRNS must come before the image data
                return False
        return False
    for fourcc, start, end in _webp_chunks(data):
        if fourcc == b"VP8X":
            return end > start and bool(data[start] & 0x10)
        if fourcc == b"VP8L":  # lossless, no extended header: the alpha_is_used bit
            return end >= start + 5 and bool((int.from_bytes(data[start + 1:start + 5], "little") >> 28) & 1)
        return False
    return False


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) a PNG (``eXIf`` chunk) or WebP (``EXIF`` chunk) carries; 1 without one.

    OpenCV turns a photo upright by it when it decodes to colour, but not when it keeps the alpha
    channel, so the decoder applies it itself then, read as OpenCV reads it: a PNG chunk with a
    wrong CRC, a WebP chunk its VP8X header does not announce, or a block with JPEG's ``Exif``
    prefix count as none.
    """
    if data[:8] == PNG_SIGNATURE:
        chunks = _png_chunks(data, checked=True)
    else:
        chunks = list(_webp_chunks(data))
        announced = bool(chunks) and chunks[0][0] == b"VP8X" and chunks[0][2] > chunks[0][1] \
            and bool(data[chunks[0][1]] & 0x08)
        chunks = chunks if announced else []
    tiff = next((data[start:end] for kind, start, end in chunks if kind in (b"eXIf", b"EXIF")), b"")
    order = {b"II": "little", b"MM": "big"}.get(bytes(tiff[:2]))
    if order is None or len(tiff) < 8:
        return 1
    directory = int.from_bytes(tiff[4:8], order)
    if directory + 2 > len(tiff):
        return 1
    for index in range(int.from_bytes(tiff[directory:directory + 2], order)):
        entry = directory + 2 + 12 * index
        if entry + 12 > len(tiff):
            break
        if int.from_bytes(tiff[entry:entry + 2], order) == EXIF_ORIENTATION_TAG:
            value = int.from_bytes(tiff[entry + 8:entry + 10], order)  # a SHORT, first in the value field
            return value if 1 <= value <= 8 else 1
    return 1


def _orientation_tiff(orientation: int) -> bytes:
    """A little-endian TIFF block holding just an EXIF orientation."""
    entry = (EXIF_ORIENTATION_TAG.to_bytes(2, "little") + (3).to_bytes(2, "little") + (1).to_bytes(4, "little")
             + orientation.to_bytes(2, "little") + bytes(2))
    return b"II*\0" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little") + entry + bytes(4)


def with_exif_orientation(data: bytes, orientation: int) -> bytes:
    """A PNG, or a lossless WebP without an extended header (as OpenCV writes them), with an EXIF
    orientation added: how the decoder asks OpenCV whether it turns such a file itself."""
    tiff = _orientation_tiff(orientation)
    if data[:8] == PNG_SIGNATURE:
        chunk = b"eXIf" + tiff
        exif = len(tiff).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
        return data[:33] + exif + data[33:]  # after the 25-byte IHDR chunk
    if data[:4] == b"RIFF" and data[12:16] == b"VP8L":
        height, width = image_size(data)
        header = bytes([0x08, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
        body = (b"VP8X" + len(header).to_bytes(4, "little") + header + data[12:]
                + b"EXIF" + len(tiff).to_bytes(4, "little") + tiff + bytes(len(tiff) & 1))
        return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body
    raise ValueError("expected a PNG or a lossless WebP without an extended header")
