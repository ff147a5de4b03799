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
import stat
from pathlib import Path

import numpy as np

from edge import image_header
from edge.bundle import InputSpec


# What the bin and training read (.jfif and .jpe are JPEG too: browsers on Windows save .jfif).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jfif", ".jpe", ".png", ".bmp", ".webp")
# Photo formats people have (phones save HEIC) that the bin does not read: named when found, so a
# class folder of iPhone photos is not silently a class without photos.
OTHER_IMAGE_EXTENSIONS = (".heic", ".heif", ".avif", ".jxl", ".tif", ".tiff", ".gif", ".dng")
# More than any camera or phone photo this bin needs: refuses decompression bombs (a 97 KB PNG that
# unpacks to 10000 x 10000) from their header, before any memory is spent.
MAX_DECODED_PIXELS = 40_000_000
# A file to decode is read whole: anything beyond this (a 40 MP photo as a 16-bit PNG is ~240 MB at
# worst) is no photo, and reading it could exhaust a Pi's memory.
MAX_FILE_BYTES = 256 * 2**20
BLEND_ROWS = 256  # rows composed on white at a time (see _on_white)


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
    """Decodes encoded image bytes (JPEG, PNG, BMP, WebP) into RGB uint8, upright by its EXIF
    orientation, the transparent parts of a PNG or WebP shown on white.

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
    size = image_header.image_size(data) if min_side or max_pixels is not None else None  # the header, read once
    factor = _jpeg_reduction(data, size, min_side)
    if max_pixels is not None and size is None:
        # OpenCV decodes more than the header readers know (TIFF, PPM, odd JPEGs): unchecked, it could be huge.
        raise ValueError("not a readable image (its size cannot be read from its header)")
    transparent = image_header.may_be_transparent(data)
    if max_pixels is not None and size is not None:
        height, width = (-(-side // factor) for side in size)  # libjpeg rounds scaled sizes up
        if height * width > max_pixels:
            raise ImageTooLarge(f"too large: {size[1]}x{size[0]} pixels (limit {max_pixels / 1e6:g} megapixels)")
        held = height * width * _transparent_weight(data) if transparent else 0
        if held > max_pixels:
            raise ImageTooLarge(f"too large: {size[1]}x{size[0]} pixels with transparency take the memory of "
                                f"{held / 1e6:.0f} megapixels (limit {max_pixels / 1e6:g} megapixels)")
        # In colour pixels' worth (3 bytes), as the limit counts them; at full size whatever the factor.
        held = image_header.jpeg_coefficient_bytes(data) / 3
        if held > max_pixels:
            kind = "progressive JPEG" if image_header.jpeg_is_progressive(data) else "JPEG in several scans"
            raise ImageTooLarge(f"too large: a {kind} of {size[1]}x{size[0]} pixels takes the memory of "
                                f"{held / 1e6:.0f} megapixels while it is decoded (limit {max_pixels / 1e6:g} "
                                f"megapixels)")
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    buffer = np.frombuffer(data, dtype=np.uint8)
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED if transparent else flag)
    except cv2.error:
        bgr = None
    if bgr is None or bgr.size == 0 or (bgr.ndim != 3 and not transparent):
        raise ValueError("not a readable image")
    if transparent:
        # Turned only where this OpenCV turns the same file when it decodes to colour (builds differ:
        # 4.x leaves a WebP's orientation alone), so a cut-out lies as its opaque twin would.
        kind = image_header.sniff(data)
        orientation = image_header.exif_orientation(data) if _opencv_turns(kind) else 1
        bgr = _upright(_on_white(bgr), orientation)
    # In place: a second full-size array would double the peak memory of a large photo.
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)


def _transparent_weight(data: bytes) -> float:
    """How many colour pixels' memory one pixel of a transparent image takes while it is decoded as
    stored (4 channels, 1 or 2 bytes each) and composed into 3 bytes: counted against max_pixels."""
    sixteen_bits = data[:8] == image_header.PNG_SIGNATURE and len(data) > 24 and data[24] == 16
    return (4 * (2 if sixteen_bits else 1) + 3) / 3


@functools.cache
def _opencv_turns(kind: str | None) -> bool:
    """Whether this OpenCV build turns a ``png`` or ``webp`` file by its EXIF orientation when it
    decodes it to colour (asked once, with a 2 x 1 picture tagged "turn 90 degrees")."""
    cv2 = _cv2()
    extension = {"png": ".png", "webp": ".webp"}.get(kind or "")
    if extension is None:
        return False
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if kind == "webp" else []  # above 100: lossless
    ok, encoded = cv2.imencode(extension, np.zeros((1, 2, 3), np.uint8), params)
    try:
        tagged = image_header.with_exif_orientation(encoded.tobytes(), 6)
        decoded = cv2.imdecode(np.frombuffer(tagged, np.uint8), cv2.IMREAD_COLOR)
    except (ValueError, cv2.error):
        return False
    return ok and decoded is not None and decoded.shape[:2] == (2, 1)


def _on_white(image: np.ndarray) -> np.ndarray:
    """A BGR uint8 picture of an image decoded as it is stored (grey or colour, 8 or 16 bits, with
    or without alpha), its transparent parts shown on white.

    White because a cut-out is meant to be seen on a background, not as the colours its transparent
    pixels happen to hide (often black, or a lossy encoder's noise), and TrashNet's photos are taken
    on white. Training decodes every photo with this decoder too (``training.pipeline.as_the_bin_sees_it``).
    """
    cv2 = _cv2()
    if image.ndim == 2 or image.shape[2] != 4:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)  # what libpng's 16-to-8 strip gives the colour decode
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image
    out = np.empty(image.shape[:2] + (3,), np.uint8)
    shift = 8 if image.dtype == np.uint16 else 0
    # In strips of rows: the wide temporaries of a 40-megapixel blend would otherwise take gigabytes.
    for top in range(0, image.shape[0], BLEND_ROWS):
        strip = image[top:top + BLEND_ROWS] >> shift if shift else image[top:top + BLEND_ROWS]
        alpha = strip[..., 3:].astype(np.uint16)
        # Rounded integer blending (at most 255 * 255 + 127, so uint16 holds it); opaque pixels stay exact.
        out[top:top + BLEND_ROWS] = (strip[..., :3].astype(np.uint16) * alpha + 255 * (255 - alpha) + 127) // 255
    return out


def _upright(bgr: np.ndarray, orientation: int) -> np.ndarray:
    """Turns a picture as its EXIF orientation (1-8) says, as OpenCV's colour decode does itself."""
    cv2 = _cv2()
    turns = {2: lambda: cv2.flip(bgr, 1), 3: lambda: cv2.flip(bgr, -1), 4: lambda: cv2.flip(bgr, 0),
             5: lambda: cv2.transpose(bgr), 6: lambda: cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE),
             7: lambda: cv2.flip(cv2.transpose(bgr), -1), 8: lambda: cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)}
    return turns[orientation]() if orientation in turns else bgr


def skipped_name(name: str) -> bool:
    """Hidden files and folders (``.DS_Store``, macOS's ``._photo.jpg``, ``.ipynb_checkpoints``) and
    the ``__MACOSX`` folder a zip made on a Mac unpacks: never photos of the bin's items."""
    return name.startswith(".") or name == "__MACOSX"


def find_photos(root: str | os.PathLike, extensions: tuple[str, ...] = IMAGE_EXTENSIONS) -> list[Path]:
    """Every image file under ``root`` (hidden ones skipped), sorted by relative path; ``extensions``
    (lower case) say what an image file is.

    Symlinked folders are followed (a replay folder or a class is often linked from a dataset),
    each real folder once, so a link loop cannot repeat photos or never end. A link to a photo that
    is gone is listed too, so that whoever reads it reports it as unreadable instead of never
    seeing it.

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
                   if not skipped_name(name) and Path(name).suffix.lower() in extensions
                   and _file_or_dangling_link(os.path.join(folder, name))]
    return sorted(photos, key=lambda path: path.relative_to(root).as_posix())


def _file_or_dangling_link(path: str) -> bool:
    return os.path.isfile(path) or (os.path.islink(path) and not os.path.exists(path))


def utf8_text(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes a file name had that were not UTF-8 become U+FFFD."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate no file system byte gives
        return name.encode("utf-8", "replace").decode("utf-8")


def photos_and_others(root: str | os.PathLike) -> tuple[list[Path], list[Path]]:
    """``find_photos(root)``, and beside it the files in ``OTHER_IMAGE_EXTENSIONS``, from one walk."""
    found = find_photos(root, IMAGE_EXTENSIONS + OTHER_IMAGE_EXTENSIONS)
    others = [path for path in found if path.suffix.lower() in OTHER_IMAGE_EXTENSIONS]
    return [path for path in found if path.suffix.lower() not in OTHER_IMAGE_EXTENSIONS], others


def other_format_summary(paths: list) -> str:
    """``"3 files (.heic 2, .gif 1)"`` for the others ``photos_and_others`` found."""
    from collections import Counter

    counts = Counter(Path(path).suffix.lower() for path in paths)
    kinds = ", ".join(f"{kind} {counts[kind]}" for kind in sorted(counts))
    return f"{len(paths)} file{'s' if len(paths) != 1 else ''} ({kinds})"


def read_image(path: str | os.PathLike, min_side: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Reads an image file into RGB uint8 (``min_side`` and ``max_pixels`` as in ``decode_image``).

    Raises:
        ValueError: the file cannot be read, is not a regular file (a pipe, a device), is larger than
            ``MAX_FILE_BYTES``, or is not an image; the message names the path.
    """
    data = read_photo_bytes(path)
    try:
        return decode_image(data, min_side, max_pixels)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def read_photo_bytes(path: str | os.PathLike) -> bytes:
    """A photo file's bytes, read whole, unless it is no regular file or larger than ``MAX_FILE_BYTES``.

    Raises:
        ValueError: as ``read_image`` says, the message naming the path.
    """
    too_big = f"{path}: larger than {MAX_FILE_BYTES / 2**20:g} MB, more than any photo"
    try:
        # Checked before opening: a named pipe would block the open, /dev/zero would fill the memory.
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):
            raise ValueError(f"{path}: not a regular file (a folder, pipe or device)")
        if status.st_size > MAX_FILE_BYTES:
            raise ValueError(too_big)
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)  # bounded too: a file may grow after the check
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ValueError(too_big)
    return data


def _jpeg_reduction(data: bytes, size: tuple[int, int] | None, min_side: int | None) -> int:
    """libjpeg's strongest DCT reduction (8, 4, 2, else 1) that keeps a JPEG's shorter side >= ``min_side``.

    Other formats (and unknown sizes) are decoded at full size: only JPEG can shrink while decoding.
    """
    if not min_side or size is None or data[:2] != b"\xff\xd8":
        return 1
    shorter = min(size)
    return next((factor for factor in (8, 4, 2) if -(-shorter // factor) >= min_side), 1)  # rounded up


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
    return _cv2().flip(rgb, _flip_code(name))


_FLIP_CODES = {"mirrored": 1, "flipped": 0, "turned": -1}  # cv2.flip's codes for the turned views


def _flip_code(name: str) -> int:
    if name not in _FLIP_CODES:
        raise ValueError(f"unknown view {name!r}: choose from {', '.join(VIEWS)}")
    return _FLIP_CODES[name]


def view_into(rgb: np.ndarray, name: str, out: np.ndarray, scratch: np.ndarray) -> None:
    """Writes ``rgb``, stretched to ``out``'s size (as ``resize_for_model``) and shown as the view
    ``name``, into ``out``: the pixels ``view(resize_for_model(rgb, ...), name)`` would return.

    For the interpreter's own input buffer: no new frame is allocated and nothing is copied again.
    ``scratch`` holds the resized frame before a flip.

    Raises:
        ValueError: an unknown view name, or ``out``/``scratch`` not C-contiguous H x W x 3 uint8
            arrays of one shape (OpenCV writes only into such arrays).
    """
    if out.ndim != 3 or out.shape[2] != 3 or any(
            array.dtype != np.uint8 or array.shape != out.shape or not array.flags.c_contiguous for array in (out, scratch)):
        raise ValueError("view_into needs C-contiguous H x W x 3 uint8 out and scratch arrays of one shape")
    cv2 = _cv2()
    height, width = out.shape[:2]
    same_size = rgb.shape[:2] == (height, width)
    if name == "original":
        if same_size:
            np.copyto(out, rgb)
        else:
            cv2.resize(rgb, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)
        return
    code = _flip_code(name)  # an unknown view is refused before anything is written
    source = rgb if same_size else cv2.resize(rgb, (width, height), dst=scratch, interpolation=cv2.INTER_LINEAR)
    cv2.flip(source, code, dst=out)


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
