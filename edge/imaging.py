"""Image decoding, resizing and encoding: the only edge module (with the OpenCV camera) that uses cv2.

Every function takes and returns RGB ``uint8`` arrays (H x W x 3); OpenCV's BGR order
stays inside this module.

Usage:
    from edge import imaging
    rgb = imaging.read_image("photo.jpg")
    tensor = imaging.resize_for_model(rgb, bundle.manifest.input)
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from edge.bundle import InputSpec


# More than any camera or phone photo this bin needs: refuses decompression bombs (a 97 KB PNG that
# unpacks to 10000 x 10000) from their header, before any memory is spent.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")  # what the bin and training read
MAX_DECODED_PIXELS = 40_000_000


class ImageTooLarge(ValueError):
    """The image would decode to more pixels than allowed (read from its header, nothing decoded)."""


@functools.cache
def _cv2():
    # Imported on first use so that `import edge` stays cheap.
    import cv2

    # Frames here are small: OpenCV's worker threads cost more in hand-offs than they save, and
    # they would compete with the LiteRT interpreter's threads for the same few cores.
    cv2.setNumThreads(1)
    return cv2


def decode_image(data: bytes, min_side: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Decodes encoded image bytes (JPEG, PNG, BMP, WebP) into RGB uint8.

    Args:
        data: the encoded image.
        min_side: when given, a large JPEG is decoded at 1/2, 1/4 or 1/8 of its size
            (libjpeg's DCT scaling: cheaper, and the full-size pixels never exist in memory)
            as long as its shorter side stays at least ``min_side``. Pass the model's larger
            input side. ``None`` (the default) decodes at full size, pixel for pixel.
        max_pixels: when given, an image that would decode to more pixels is refused from its
            header, before any memory is spent (a small PNG can unpack to gigabytes).

    Raises:
        ValueError: ``"not a readable image"`` for empty, truncated or foreign bytes; ``"too
            large"`` beyond ``max_pixels``.
    """
    if not data:
        raise ValueError("not a readable image")
    cv2 = _cv2()
    size = image_size(data) if min_side or max_pixels is not None else None  # the header, read once
    factor = _jpeg_reduction(data, size, min_side)
    if max_pixels is not None and size is None:
        # OpenCV decodes more than the header readers know (TIFF, PPM, odd JPEGs): unchecked, it could be huge.
        raise ValueError("not a readable image (its size cannot be read from its header)")
    if max_pixels is not None and size is not None:
        height, width = (-(-side // factor) for side in size)  # libjpeg rounds scaled sizes up
        if height * width > max_pixels:
            raise ImageTooLarge(f"too large: {size[1]}x{size[0]} pixels (limit {max_pixels / 1e6:g} megapixels)")
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buffer, flag)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.ndim != 3 or bgr.size == 0:
        raise ValueError("not a readable image")
    # In place: a second full-size array would double the peak memory of a large photo.
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)


def skipped_name(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, macOS's ``._photo.jpg``, ``.ipynb_checkpoints``) and
    the ``__MACOSX`` folder a zip made on a Mac unpacks: never photos of the bin's items."""
    return name.startswith(".") or name == "__MACOSX"


def find_photos(root: str | os.PathLike) -> list[Path]:
    """Every image file under ``root`` (hidden ones skipped), sorted by relative path.

    Symlinked folders are followed (a replay folder or a class is often linked from a dataset),
    each real folder once, so a link loop cannot repeat photos or never end.

    Usage:
        photos = find_photos("photos/glass")
    """
    root = Path(root)
    photos, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        status = os.stat(folder)
        if (status.st_dev, status.st_ino) in seen:
            subfolders[:] = []
            continue
        seen.add((status.st_dev, status.st_ino))
        # Sorted: of two links to one folder, the first by name is the one kept, on every file system.
        subfolders[:] = sorted(name for name in subfolders if not skipped_name(name))
        photos += [Path(folder, name) for name in files
                   if not skipped_name(name) and Path(name).suffix.lower() in IMAGE_EXTENSIONS
                   and os.path.isfile(os.path.join(folder, name))]
    return sorted(photos, key=lambda path: path.relative_to(root).as_posix())


def read_image(path: str | os.PathLike, min_side: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Reads an image file into RGB uint8 (``min_side`` and ``max_pixels`` as in ``decode_image``).

    Raises:
        ValueError: the file cannot be read or is not an image; the message names the path.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return decode_image(data, min_side, max_pixels)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def image_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG, PNG, GIF, BMP or WebP header without decoding; None if unknown."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return int.from_bytes(data[8:10], "little"), int.from_bytes(data[6:8], "little")
    if data[:2] == b"BM" and len(data) >= 26:
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


def _jpeg_reduction(data: bytes, size: tuple[int, int] | None, min_side: int | None) -> int:
    """libjpeg's strongest DCT reduction (8, 4, 2, else 1) that keeps a JPEG's shorter side >= ``min_side``.

    Other formats (and unknown sizes) are decoded at full size: only JPEG can shrink while decoding.
    """
    if not min_side or size is None or data[:2] != b"\xff\xd8":
        return 1
    shorter = min(size)
    return next((factor for factor in (8, 4, 2) if -(-shorter // factor) >= min_side), 1)  # rounded up


# Start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD8)) | {0x01}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header without decoding it; None if not a readable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    position, end = 2, len(data)
    while position + 4 <= end:
        if data[position] != 0xFF:
            # Stray bytes between segments: libjpeg skips them with a warning and decodes on, so
            # must this, or a picture's size would go unread (and unchecked) while OpenCV decodes it.
            position = data.find(b"\xff", position)
            if position < 0:
                return None
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
        length = int.from_bytes(data[position + 2:position + 4], "big")
        if marker in _SOF_MARKERS:
            if length < 7 or position + 9 > end:
                return None
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return (height, width) if height and width else None
        if marker in (0xD9, 0xDA) or length < 2:  # end of image or scan data before any frame header
            return None
        position += 2 + length
    return None


def resize_for_model(rgb: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Stretches the whole image to the model's input size (bilinear, no crop, no padding).

    Returns the image unchanged (no copy) when it already has the right size, so a
    photo at model size is classified exactly as given.
    """
    height, width = rgb.shape[:2]
    if (height, width) == (spec.height, spec.width):
        return rgb
    return _cv2().resize(rgb, (spec.width, spec.height), interpolation=_cv2().INTER_LINEAR)


# How the classifier may be shown a frame (``model.views``): the model was trained on flipped and
# turned photos, so each is an equally valid picture of the same item.
VIEWS = ("original", "mirrored", "flipped", "turned")
DEFAULT_VIEWS = ("original", "mirrored", "flipped")  # model.views' default, chosen on val: benchmarks/views.md


def parse_views(text: str) -> list[str]:
    """``"original, mirrored"`` -> ``["original", "mirrored"]``, as the ``--views`` options take them.

    Raises:
        ValueError: no view, or a name that is not one of ``VIEWS`` (the message lists them).
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or any(name not in VIEWS for name in names):
        raise ValueError(f"expected views from {', '.join(VIEWS)} separated by commas, got {text!r}")
    return names


def view(rgb: np.ndarray, name: str) -> np.ndarray:
    """``rgb`` as the view ``name`` of ``VIEWS``: as is (the same array), mirrored left to right,
    flipped top to bottom, or turned 180° (new contiguous arrays).

    Raises:
        ValueError: an unknown view name.
    """
    if name == "original":
        return rgb
    # OpenCV flips with SIMD: NumPy's reversed view would need an element-wise copy of 3-byte pixels
    # before the interpreter can take it: 0.5 ms for a 320 x 320 frame, against 0.015 ms here.
    codes = {"mirrored": 1, "flipped": 0, "turned": -1}
    if name not in codes:
        raise ValueError(f"unknown view {name!r}: choose from {', '.join(VIEWS)}")
    return _cv2().flip(rgb, codes[name])


def encode_jpeg(rgb: np.ndarray, quality: int = 85, max_side: int | None = None) -> bytes:
    """Encodes RGB uint8 as JPEG, first shrinking so the longer side is at most ``max_side``."""
    cv2 = _cv2()
    image = rgb
    if max_side is not None and max(image.shape[:2]) > max_side:
        height, width = image.shape[:2]
        factor = max_side / max(height, width)
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("cannot encode image as JPEG")
    return encoded.tobytes()


# The item detector's view of a frame (width, height): small enough to be cheap on a Pi, big
# enough for a tray. Camera sources may make it on their capture thread (``Frame.thumbnail``).
THUMBNAIL_SIZE = (64, 48)


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """The item detector's small grey copy of a frame (``THUMBNAIL_SIZE``, float32)."""
    thumb = to_small_grey(rgb, THUMBNAIL_SIZE)
    thumb.setflags(write=False)  # shared by every frame of a replayed photo
    return thumb


def to_small_grey(rgb: np.ndarray, size: tuple[int, int] = THUMBNAIL_SIZE) -> np.ndarray:
    """Shrinks an RGB frame to a small float32 grey image (``size`` is width, height).

    The item detector wants an area average (it smooths sensor noise away), but OpenCV's
    area resize is slow for large factors (5 ms for a 1080p frame). So a frame more than 4x
    the target is first stretched bilinearly to exactly 4x, converted to grey there, and
    only then area-averaged: 0.3 ms for 1080p, within a grey level or two of the direct
    area average, and sensor noise still averages out far below the detector's thresholds.
    """
    cv2 = _cv2()
    width, height = size
    if rgb.shape[1] > 4 * width and rgb.shape[0] > 4 * height:
        rgb = cv2.resize(rgb, (4 * width, 4 * height), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return small.astype(np.float32)


def resize(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resizes to exactly ``width`` x ``height`` with bilinear interpolation."""
    return _cv2().resize(rgb, (int(width), int(height)), interpolation=_cv2().INTER_LINEAR)
