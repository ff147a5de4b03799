"""Replay: a folder of photos shown one by one on a simulated tray.

Each photo is one item: ``empty_frames`` frames of the empty tray, then ``present_frames``
frames that are the decoded photo itself (unchanged, so classifying the settled frame
equals classifying the photo), then the next photo's empty frames. After the last
photo, one more run of empty frames, then the end of the stream. The item detector
therefore sees exactly what a camera over a real tray would give it. The tray is drawn at
each photo's size, like a camera's frames; a photo with fewer pixels than the detector's
thumbnail across or down (1x1, 16x12, 10000x10, 3x2000) gets the tray at ``tray_size``
instead: drawn on so few pixels, the tray pattern no longer looks like the same tray to the
detector, which would take it for an item and never see the photo. Like a camera, which
captures on its own thread while the pipeline works, the replay decodes the next photo (and
makes the detector's thumbnails of it and of the tray, and, given ``model_spec``, the photo at
the classifier's input size) on a background thread while the current one is on the tray.

Usage:
    source = ReplaySource("data/trashnet-test", fps=0)
    frame = source.read()   # frame.truth == "glass", frame.source_id == "glass/glass_12.jpg"
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge import imaging
from edge.bundle import InputSpec
from edge.camera import Frame
from edge.errors import CameraError, MissingInputError
from edge.imaging import IMAGE_EXTENSIONS, find_photos  # noqa: F401  (part of this module's interface)

log = logging.getLogger(__name__)

REPLAY_ORDERS = ("shuffled", "sorted")
SHUFFLE_SEED = 0  # fixed: a replay is a repeatable experiment
CLOSE_JOIN_S = 5.0  # the decode under way when close() is called: ~1 s at most for a 40 MP photo on a Pi


# Photos in one folder mostly share a size or two; each cached tray holds a photo-size frame.
@lru_cache(maxsize=2)
def empty_tray(width: int, height: int) -> np.ndarray:
    """The empty tray at a given size: a smooth grey pattern, identical on every call.

    The pattern is defined in relative coordinates, so it looks the same to the detector
    (which shrinks every frame) whatever the photo size; its strong light/dark swing
    means no real object can match it over more than a small part of the tray. Built from
    one row and one column (the pattern is separable) in float32 and uint8: a 12 MP tray
    needs ~100 MB while it is made, not the ~500 MB of full-size coordinate grids.
    """
    u = np.linspace(0, 1, width, dtype=np.float32)
    v = np.linspace(0, 1, height, dtype=np.float32)
    pattern = np.outer(np.cos(2 * np.pi * 1.5 * v), np.sin(2 * np.pi * (2 * u + 0.25)))
    pattern *= 70
    pattern += 128
    # Fixed seed: the same grain every time.
    pattern += np.random.default_rng(7).integers(-3, 4, (height, width), dtype=np.int8)
    grey = np.clip(pattern, 0, 255, out=pattern).astype(np.uint8)
    del pattern
    tray = np.repeat(grey[..., None], 3, axis=2)
    tray.setflags(write=False)
    return tray


@lru_cache(maxsize=8)  # 64 x 48 each
def empty_tray_thumbnail(width: int, height: int) -> np.ndarray:
    """The item detector's view of ``empty_tray(width, height)``, made once per size."""
    return imaging.thumbnail(empty_tray(width, height))


class ReplaySource:
    """Photos from a folder as items on a simulated tray.

    Args:
        path: the folder; photos in class subfolders get the subfolder name as ``truth``.
        fps: frames per second to pace at; 0 delivers frames as fast as ``read`` is called.
        empty_frames: empty-tray frames before each photo (and after the last one).
        present_frames: frames showing each photo.
        tray_size: (width, height) of the empty tray before any photo has been read, and under a
            photo too small or too thin to draw the tray at its size; at least the detector's
            thumbnail size (``imaging.THUMBNAIL_SIZE``) each way.
        loop: start again from the first photo instead of ending.
        order: ``shuffled`` (a fixed pseudo-random order: the same every run, classes mixed as on a
            real tray) or ``sorted`` (by relative path, one class folder after the other).
        model_spec: the classifier's input; when given, each photo's frames carry it stretched to
            that size (``Frame.model_input``), made once per photo on the decoder thread.

    Raises:
        CameraError: the folder does not exist or holds no photos.

    Usage:
        source = ReplaySource("photos/", fps=0); frame = source.read()
    """

    def __init__(self, path, fps: float = 0.0, empty_frames: int = 4, present_frames: int = 6,
                 tray_size: tuple[int, int] = (512, 384), loop: bool = False, order: str = "sorted",
                 model_spec: InputSpec | None = None):
        self.root = Path(path)
        if self.root.is_file():
            raise MissingInputError(f"replay: {self.root} is a file; replay takes a folder of photos "
                                    f"(smartbin classify --model BUNDLE PHOTO classifies one photo)")
        if not self.root.is_dir():
            raise MissingInputError(f"replay folder not found: {self.root}")
        self.photos, others = imaging.photos_and_others(self.root)
        unread = f"; {imaging.other_format_summary(others)} in formats the bin does not read " \
                 "(convert them to JPEG or PNG)" if others else ""
        if not self.photos:
            raise MissingInputError(f"no photos ({', '.join(ext[1:] for ext in IMAGE_EXTENSIONS)}) "
                                    f"under {self.root}{unread}")
        if not any(photo.exists() for photo in self.photos):  # links whose photos are gone: nothing to show
            raise MissingInputError(f"no photos under {self.root}: its {len(self.photos)} photo links point to "
                                    f"files that are gone")
        if others:
            log.warning("replay: leaving out %s", unread[2:])
        if order not in REPLAY_ORDERS:
            raise CameraError(f"replay: order must be one of {', '.join(REPLAY_ORDERS)}, not {order!r}")
        if order == "shuffled":
            random.Random(SHUFFLE_SEED).shuffle(self.photos)
        if empty_frames < 1 or present_frames < 1:
            raise CameraError("replay: empty_frames and present_frames must be at least 1")
        if fps < 0:
            raise CameraError("replay: fps must be 0 (unthrottled) or positive")
        self.empty_frames = empty_frames
        self.present_frames = present_frames
        self.loop = loop
        self.model_spec = model_spec
        # Raised to the thumbnail size: this tray stands in for the ones too small to look like a tray.
        self._tray_size = tuple(max(int(side), least) for side, least in zip(tray_size, imaging.THUMBNAIL_SIZE))
        self._interval = 1.0 / fps if fps else 0.0
        self._next_due = time.monotonic()
        self._index = 0
        self._closed = threading.Event()  # set by close(); also wakes a paced read
        self._join_by = 0.0  # when close() stops waiting for the decoder
        self._stats = {"frames": 0, "unreadable": 0, "retries": 0, "photos": 0}
        # One photo decoded ahead: enough to overlap decoding with the pipeline, and a 12 MP photo
        # costs 36 MB, so no more.
        self._decoded: queue.Queue = queue.Queue(maxsize=1)
        self._decoder = threading.Thread(target=self._decode_ahead, name="replay-decoder", daemon=True)
        self._decoder.start()
        self._frames = self._generate()

    def _decode_ahead(self) -> None:
        try:
            self._decode_all()
        except BaseException as err:  # noqa: BLE001 -- the reader must not wait forever: hand it the error
            self._hand_over(err)

    def _decode_all(self) -> None:
        while not self._closed.is_set():
            shown = 0
            for path in self.photos:
                photo = self._decode(path)
                shown += photo is not None
                if photo is None:
                    continue
                # The detector's thumbnails are made here too, as a camera's low-resolution
                # stream would make them, so the sorting loop only compares them.
                tray = self._tray_under(photo)
                thumbs = imaging.thumbnail(photo), empty_tray_thumbnail(*tray)
                if not self._hand_over((path, photo, tray, thumbs, self._for_model(photo))):
                    return
            if not self.loop or shown == 0:
                break
        self._hand_over(None)

    def _for_model(self, photo: np.ndarray) -> np.ndarray | None:
        """``photo`` at the classifier's input size, or None when the size was not given."""
        if self.model_spec is None:
            return None
        resized = imaging.resize_for_model(photo, self.model_spec)
        resized.setflags(write=False)  # shared by the photo's frames, like the photo
        return resized

    def _tray_under(self, photo: np.ndarray) -> tuple[int, int]:
        """The (width, height) to draw the empty tray at around ``photo``: the photo's own size, as a
        camera's frames all have one size, unless the photo is smaller than the detector's thumbnail
        either way; then ``tray_size``.

        The tray pattern is defined in relative coordinates, but drawn on fewer pixels than the
        thumbnail has, it is sampled too coarsely (one pixel: one grey level; three columns: stripes)
        and its thumbnail differs from every other tray's: the detector, which learnt the tray from
        other photos, would take that tray for an item (and the photo after it for the same item),
        or, learning it first, take every later tray for one item that never leaves.
        """
        height, width = photo.shape[:2]
        least_width, least_height = imaging.THUMBNAIL_SIZE
        if width < least_width or height < least_height:
            return self._tray_size
        return width, height

    def _hand_over(self, item) -> bool:
        while not self._closed.is_set():
            try:
                self._decoded.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _take_decoded(self):
        while not self._closed.is_set():
            try:
                return self._decoded.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _generate(self) -> Iterator[tuple[np.ndarray, np.ndarray, str | None, str | None, np.ndarray | None]]:
        size = self._tray_size
        while (item := self._take_decoded()) is not None:
            if isinstance(item, BaseException):
                raise item  # the decoder thread failed (out of memory, ...): as fatal as on this thread
            path, photo, size, (photo_thumb, tray_thumb), photo_for_model = item
            relative = path.relative_to(self.root)
            # A name that is not UTF-8 (copied from an old camera card) reaches us with surrogates, which
            # no JSON parser of a dashboard accepts: shown with U+FFFD in the events instead.
            relative = Path(imaging.utf8_text(str(relative)))
            truth = relative.parts[0] if len(relative.parts) > 1 else None
            for _ in range(self.empty_frames):
                yield empty_tray(*size), tray_thumb, None, None, None
            self._stats["photos"] += 1
            for _ in range(self.present_frames):
                yield photo, photo_thumb, truth, relative.as_posix(), photo_for_model
        for _ in range(self.empty_frames):
            yield empty_tray(*size), empty_tray_thumbnail(*size), None, None, None

    def _decode(self, path: Path) -> np.ndarray | None:
        try:
            # A photo bigger than any camera's (a PNG "bomb") is skipped like an unreadable one.
            photo = imaging.read_image(path, max_pixels=imaging.MAX_DECODED_PIXELS)
        except ValueError as err:
            self._stats["unreadable"] += 1
            log.warning("replay: skipping unreadable photo %s", err)
            return None
        photo.setflags(write=False)  # shared by several frames: nobody may draw on it
        return photo

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, paced at ``fps``; None after the last empty frames.

        Pacing never waits longer than one frame interval, so ``timeout`` cannot expire.
        """
        if self._closed.is_set():
            return None
        item = next(self._frames, None)
        if item is None:
            return None
        if self._interval:
            # Woken by close(): at a slow pace a stop must not wait out the frame interval.
            if self._closed.wait(max(0.0, self._next_due - time.monotonic())):
                return None
            self._next_due = max(self._next_due, time.monotonic()) + self._interval
        image, thumb, truth, source_id, for_model = item
        frame = Frame(image=image, ts=time.time(), index=self._index, truth=truth, source_id=source_id,
                      thumbnail=thumb, model_input=for_model)
        self._index += 1
        self._stats["frames"] += 1
        return frame

    def close(self) -> None:
        """Stops the decoder and waits for it (up to ``CLOSE_JOIN_S``): a process that exits while the
        thread is inside OpenCV's decoder can abort in OpenCV's teardown (exit 134 instead of its own code)."""
        if not self._closed.is_set():
            self._join_by = time.monotonic() + CLOSE_JOIN_S  # one wait in all, however many callers
            self._closed.set()
        if self._decoder.is_alive() and self._decoder is not threading.current_thread():
            # It looks at _closed between photos and every 0.1 s while it waits.
            self._decoder.join(max(0.0, self._join_by - time.monotonic()))

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)
