"""image_header: what a JPEG, PNG, GIF, BMP or WebP header says before anything is decoded."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from edge import image_header
from tests.conftest import make_photo, pillow_bytes

PIL = pytest.importorskip("PIL.Image")


def encoded(ext: str, image: np.ndarray, *params) -> bytes:
    ok, data = cv2.imencode(ext, image, list(params))
    assert ok
    return data.tobytes()


def pillow(mode: str, fmt: str, orientation: int | None = None, **options) -> bytes:
    return pillow_bytes(PIL.new(mode, (8, 6)), fmt, orientation, **options)


def test_jpeg_size_reads_the_frame_header_without_decoding():
    assert image_header.jpeg_size(encoded(".jpg", make_photo(0, size=(48, 64)))) == (48, 64)
    progressive = encoded(".jpg", make_photo(0, size=(30, 70)), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert image_header.jpeg_size(progressive) == (30, 70)
    assert image_header.jpeg_size(encoded(".png", make_photo(0))) is None
    assert image_header.jpeg_size(b"\xff\xd8garbage") is None
    assert image_header.jpeg_size(encoded(".jpg", make_photo(0))[:20]) is None


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp", ".jpg"])
def test_image_size_reads_every_format_header(ext):
    assert image_header.image_size(encoded(ext, np.zeros((37, 53, 3), np.uint8))) == (37, 53)


def test_image_size_reads_gif_and_lossless_and_alpha_webp():
    for mode, fmt, options in (("RGB", "GIF", {}), ("RGB", "WEBP", {"lossless": True}), ("RGBA", "WEBP", {})):
        buffer = io.BytesIO()
        PIL.fromarray(np.zeros((37, 53, len(mode)), np.uint8), mode).save(buffer, format=fmt, **options)
        assert image_header.image_size(buffer.getvalue()) == (37, 53), (fmt, options)


@pytest.mark.parametrize("data, transparent", [
    (pillow("RGBA", "PNG"), True),
    (pillow("LA", "PNG"), True),
    (pillow("P", "PNG", transparency=0), True),         # palette with a tRNS chunk
    (pillow("RGB", "PNG", transparency=(0, 0, 0)), True),  # colour key
    (pillow("RGB", "PNG"), False),
    (pillow("L", "PNG"), False),
    (pillow("RGBA", "WEBP"), True),                      # lossy with alpha: VP8X + ALPH
    (pillow("RGB", "WEBP"), False),
    (pillow("RGBA", "WEBP", lossless=True), True),       # VP8L's alpha bit (not all opaque: new() is clear)
    (pillow("RGB", "WEBP", lossless=True), False),
    (pillow("RGBA", "BMP"), False),                      # a 32-bit BMP's fourth byte is often padding
    (encoded(".jpg", make_photo(0)), False),
    (b"", False),
])
def test_transparency_is_read_from_png_and_webp_headers(data, transparent):
    assert image_header.may_be_transparent(data) is transparent


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("WEBP", {"lossless": True}), ("WEBP", {})])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_exif_orientation_is_read_from_png_and_webp(fmt, options, orientation):
    assert image_header.exif_orientation(pillow("RGBA", fmt, orientation, **options)) == orientation


def test_no_or_broken_exif_means_upright():
    assert image_header.exif_orientation(pillow("RGBA", "PNG")) == 1
    assert image_header.exif_orientation(encoded(".jpg", make_photo(0))) == 1  # OpenCV turns JPEGs itself
    png = pillow("RGBA", "PNG", 6)
    position = png.index(b"eXIf")
    assert image_header.exif_orientation(png[:position + 10]) == 1  # truncated inside the chunk
    broken = png[:position + 4] + b"XX" + png[position + 6:]         # neither II nor MM
    assert image_header.exif_orientation(broken) == 1


def test_an_os2_bmp_is_measured_by_its_16_bit_sides():
    import struct

    width, height = 5, 3
    row = (width * 3 + 3) & ~3
    pixels = b"".join(bytes([10, 20, 30]) * width + b"\0" * (row - width * 3) for _ in range(height))
    core_header = struct.pack("<IHHHH", 12, width, height, 1, 24)  # BITMAPCOREHEADER
    data = b"BM" + struct.pack("<IHHI", 26 + len(pixels), 0, 0, 26) + core_header + pixels
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (3, 5, 3)
    assert image_header.image_size(data) == (3, 5)  # was read as 32-bit fields: a huge, refused size


def test_an_exif_block_opencv_would_not_read_counts_as_none():
    png = pillow("RGBA", "PNG", 6)
    position = png.index(b"eXIf")
    length = int.from_bytes(png[position - 4:position], "big")
    crc_at = position + 4 + length
    bad_crc = png[:crc_at] + bytes(b ^ 0xFF for b in png[crc_at:crc_at + 4]) + png[crc_at + 4:]
    assert image_header.exif_orientation(bad_crc) == 1  # libpng drops the chunk

    webp = bytearray(pillow("RGBA", "WEBP", 6))
    assert webp[12:16] == b"VP8X" and webp[20] & 0x08
    webp[20] &= ~0x08  # the EXIF chunk is still there, but not announced
    assert image_header.exif_orientation(bytes(webp)) == 1

    exif = PIL.Exif()
    exif[0x0112] = 6
    prefixed = io.BytesIO()
    PIL.new("RGBA", (8, 6)).save(prefixed, format="PNG", exif=b"Exif\0\0" + exif.tobytes())
    assert image_header.exif_orientation(prefixed.getvalue()) == 1  # OpenCV refuses JPEG's prefix here


def test_a_grey_pictures_colour_key_is_not_taken_for_transparency():
    assert image_header.may_be_transparent(pillow("L", "PNG", transparency=0)) is False


PNG_START = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR"


@pytest.mark.parametrize("data", [
    b"RIFF\x0c\0\0\0WEBPVP8X\0\0\0\0",  # an empty VP8X chunk at the end
    b"RIFF\x14\0\0\0WEBPVP8X\0\0\0\0EXIF\0\0\0\0",
    PNG_START,
    PNG_START + b"\0" * 30,
    b"\x89PNG\r\n\x1a\n\xff\xff\xff\xffeXIf",
])
def test_malformed_headers_are_read_as_opaque_and_upright_without_raising(data):
    assert image_header.exif_orientation(data) == 1
    assert image_header.may_be_transparent(data) in (True, False)


def test_sniff_names_the_formats_the_bin_reads():
    assert image_header.sniff(encoded(".jpg", make_photo(0))) == "jpeg"
    assert image_header.sniff(encoded(".png", make_photo(0))) == "png"
    assert image_header.sniff(encoded(".webp", make_photo(0))) == "webp"
    assert image_header.sniff(encoded(".bmp", make_photo(0))) == "bmp"
    assert image_header.sniff(b"\0\0\0\x18ftypheic") is None


def test_a_jpeg_or_png_with_data_after_its_end_is_whole_one_cut_short_is_not():
    jpeg, png = encoded(".jpg", make_photo(0)), encoded(".png", make_photo(0))
    motion_photo = jpeg + b"\0\0\0\x18ftypmp42" + bytes(5000)  # a phone's video after the picture
    assert not image_header.is_truncated(motion_photo, "jpeg")
    assert not image_header.is_truncated(png + bytes(100), "png")
    assert image_header.is_truncated(jpeg[:len(jpeg) // 2], "jpeg")
    assert image_header.is_truncated(png[:len(png) // 2], "png")
    padded = jpeg[:-2] + bytes(200)  # the end marker replaced by padding
    assert image_header.is_truncated(padded, "jpeg")


@pytest.mark.parametrize("ext", [".png", ".webp"])
def test_an_orientation_can_be_added_to_the_files_opencv_writes(ext):
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    tagged = image_header.with_exif_orientation(encoded(ext, make_photo(0, size=(6, 8)), *params), 6)
    assert image_header.exif_orientation(tagged) == 6
    assert cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_UNCHANGED).shape[:2] == (6, 8)
