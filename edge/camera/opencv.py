"""OpenCV ``VideoCapture`` source: a USB camera index, a video file or an RTSP/HTTP URL.

A capture thread reads continuously so that ``read`` always gets a fresh frame from a
live camera (older frames are dropped and counted) and so that a hung driver cannot
block the caller past its timeout. Read failures on a live camera reopen it with
exponential back-off; a recording (a video file, or the ``http(s)://``/``file://`` URL of one)
loses no frame and simply ends, with a warning when it ends well before its frame count.

Usage:
    source = OpenCVSource(device=0, width=640, height=480)
    frame = source.read(timeout=2.0)
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from edge import imaging
from edge.bundle import InputSpec
from edge.camera import Frame
from edge.errors import CameraError, MissingInputError

log = logging.getLogger(__name__)

_END = object()
CLOSE_POLL_S = 0.1


def _cv2():
    import cv2

    return cv2


def parse_device(device: int | str) -> int | str:
    """``"0"`` means camera index 0; anything else is a path or URL."""
    if isinstance(device, str) and device.strip().isdigit():
        return int(device)
    return device


def looks_like_a_missing_file(device: str) -> bool:
    """True for a device string that can only be a file path (no URL, pipeline or /dev node) and is not there."""
    return "://" not in device and "!" not in device and not device.startswith("/dev/") \
        and not os.path.exists(device)


class OpenCVSource:
    """Frames from ``cv2.VideoCapture``, converted from BGR to RGB.

    Args:
        device: camera index, video file path, or stream URL.
        width, height, fps: requested capture settings (a camera may ignore them).
        retries: reopen attempts after a failure before giving up with ``CameraError``.
        backoff_s: first wait between attempts; doubles each time up to ``max_backoff_s``.
        model_spec: the classifier's input; when given, every frame also carries itself stretched
            to that size (``Frame.model_input``), made on the capture thread.

    Raises:
        CameraError: the device cannot be opened after its retries.

    Usage:
        source = OpenCVSource(device="rtsp://cam/stream"); frame = source.read(timeout=2.0)
    """

    def __init__(self, device: int | str = 0, width: int | None = None, height: int | None = None,
                 fps: float | None = None, retries: int = 5, backoff_s: float = 0.1,
                 max_backoff_s: float = 2.0, model_spec: InputSpec | None = None):
        self.device = parse_device(device)
        # A regular file is a recording, played to its end; a device node (/dev/video0), a stream URL or
        # a GStreamer pipeline is a live source, reopened when it fails.
        self._is_file = isinstance(self.device, str) and os.path.isfile(self.device)
        # Only a URL that names a video file: a live camera taken for a recording would stop the bin.
        self._is_recording = self._is_file or _names_a_recording(self.device)
        if isinstance(self.device, str) and not self._is_file and looks_like_a_missing_file(self.device):
            raise MissingInputError(f"opencv: video file not found: {self.device}")
        if isinstance(self.device, str) and os.path.isdir(self.device):
            raise MissingInputError(f"opencv: {self.device} is a folder, not a video file or camera "
                                    f"(a folder of photos is replayed: --replay {self.device})")
        self._settings = (width, height, fps)
        self._model_spec = model_spec
        self._retries = max(0, retries)
        self._backoff = (backoff_s, max_backoff_s)
        self._stats = {"frames": 0, "unreadable": 0, "retries": 0, "dropped": 0}
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._finished: object = None
        self._capture = self._open_with_retries()
        self._thread = threading.Thread(target=self._pump, name="opencv-capture", daemon=True)
        self._thread.start()

    def _open(self):
        cv2 = _cv2()
        # OpenCV prints a WARN line per backend it tries; our CameraError says it once, clearly.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            capture = cv2.VideoCapture(self.device)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            capture.release()
            return None
        width, height, fps = self._settings
        if not self._is_file:
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, width), (cv2.CAP_PROP_FRAME_HEIGHT, height),
                                (cv2.CAP_PROP_FPS, fps)):
                if value:
                    capture.set(prop, value)
        return capture

    def _delay(self, attempt: int) -> float:
        first, most = self._backoff
        return min(most, first * 2 ** attempt)

    def _open_with_retries(self):
        if self._is_file:
            # A recording that will not open now never will: no retries, and exit 2 rather than a
            # restart loop (an empty file, a half-copied one, a format this OpenCV cannot decode).
            capture = self._open()
            if capture is None:
                raise MissingInputError(f"opencv: cannot read video file {self.device} (empty, damaged, or "
                                        f"in a format this OpenCV cannot decode)")
            return capture
        for attempt in range(self._retries + 1):
            capture = self._open()
            if capture is not None:
                return capture
            if attempt < self._retries:
                self._stats["retries"] += 1
                if self._stop.wait(self._delay(attempt)):
                    break
        attempts = self._retries + 1
        raise CameraError(f"opencv: cannot open camera {self.device!r} "
                          f"(gave up after {attempts} attempt{'s' if attempts > 1 else ''})")

    def _pump(self) -> None:
        try:
            self._pump_frames()
        except Exception as err:  # noqa: BLE001 -- a dead capture thread must not leave read() waiting
            log.exception("opencv: capture thread failed")
            self._deliver(CameraError(f"opencv: capture failed on {self.device!r}: {err}"))

    def _pump_frames(self) -> None:
        cv2 = _cv2()
        failures = 0
        since_open = 0
        while not self._stop.is_set():
            ok, bgr = self._capture.read()
            rgb = _to_rgb(cv2, bgr) if ok and bgr is not None else None
            if rgb is not None:
                failures = 0
                since_open += 1
                self._stats["frames"] += 1
                # The detector's thumbnail (and the classifier's input) is made here, on the capture
                # thread, not on the sorting loop.
                for_model = None if self._model_spec is None else imaging.resize_for_model(rgb, self._model_spec)
                frame = Frame(image=rgb, ts=time.time(), index=self._stats["frames"] - 1,
                              thumbnail=imaging.thumbnail(rgb), model_input=for_model)
                self._deliver(frame)
                continue
            if ok and bgr is not None:
                self._stats["unreadable"] += 1  # a frame in a layout we cannot use: skip it, keep reading
                since_open += 1
                continue
            if self._is_file or (self._is_recording and since_open):
                # A recording behind a URL too: reopened like a live stream, it would be played again
                # and its items sorted twice. (One that never gave a frame is retried: the server may be down.)
                self._warn_if_cut_short()
                self._deliver(_END)
                return
            failures += 1
            if failures > self._retries:
                self._deliver(CameraError(f"opencv: camera {self.device!r} stopped delivering frames "
                                          f"({self._retries} retries with back-off failed)"))
                return
            self._stats["retries"] += 1
            log.warning("opencv: read failed on %r, reopening (attempt %d of %d)",
                        self.device, failures, self._retries)
            if self._stop.wait(self._delay(failures - 1)):
                return
            self._capture.release()
            self._capture = self._open() or self._capture
            since_open = 0

    def _warn_if_cut_short(self) -> None:
        # OpenCV ends a damaged recording at the first bad frame, silently: say so, or a bin that sorted
        # nothing from it looks like one whose video had no items.
        expected = int(self._capture.get(_cv2().CAP_PROP_FRAME_COUNT) or 0)
        read = self._stats["frames"] + self._stats["unreadable"]
        if expected > 0 and read < expected * 0.9:
            log.warning("opencv: %s ended after %d of its %d frames (damaged?)", self.device, read, expected)

    def _deliver(self, item) -> None:
        if self._is_recording or item is _END or isinstance(item, CameraError):
            # A recording must not lose frames and the end marker must not be dropped: wait for room.
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            # A live camera keeps only the newest frames: the detector wants the present.
            try:
                self._queue.get_nowait()
                self._stats["dropped"] += 1
            except queue.Empty:
                pass
            self._queue.put_nowait(item)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame; None at the end of a video file.

        Raises:
            CameraError: no frame within ``timeout`` seconds, or the camera died.
        """
        if self._finished is _END or self._stop.is_set():
            return None
        if isinstance(self._finished, CameraError):
            raise self._finished
        # Short waits, so that close() (e.g. on SIGTERM) ends a read of a stalled camera at once
        # instead of after the whole timeout.
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = CLOSE_POLL_S if deadline is None else min(CLOSE_POLL_S, max(0.0, deadline - time.monotonic()))
            try:
                item = self._queue.get(timeout=wait)
                break
            except queue.Empty:
                if self._stop.is_set():
                    return None
                if deadline is not None and time.monotonic() >= deadline:
                    raise CameraError(f"camera timeout: no frame from {self.device!r} within {timeout:g} s") from None
        if item is _END or isinstance(item, CameraError):
            self._finished = item
            return self.read()
        return item

    def close(self) -> None:
        """Stops capturing and ends a waiting ``read`` (which then returns None); safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        # A live camera's reader stops within a frame; a hung driver is left behind (the process exits soon).
        self._thread.join(timeout=1.0)
        if not self._thread.is_alive():  # releasing under a blocked read() can crash the driver
            self._capture.release()

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)


RECORDING_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")


def _names_a_recording(device) -> bool:
    """``file://`` or ``http(s)://`` URL of a video file (by its suffix), not a live stream."""
    from urllib.parse import urlsplit

    if not isinstance(device, str) or "://" not in device:
        return False
    url = urlsplit(device)
    return url.scheme.lower() in ("file", "http", "https") and url.path.lower().endswith(RECORDING_SUFFIXES)


def _to_rgb(cv2, frame):
    """RGB uint8 from OpenCV's BGR, BGRA or grey frames; None for anything else."""
    if frame.dtype != "uint8":
        return None
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return None
