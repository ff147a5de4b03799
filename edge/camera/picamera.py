"""Raspberry Pi camera through picamera2 (libcamera), imported only when this source is opened.

picamera2 comes from Raspberry Pi OS (``apt install python3-picamera2``), not from PyPI:
it needs the system libcamera bindings, so a venv must use ``--system-site-packages``.

Usage:
    source = PiCameraSource(width=640, height=480, fps=15)
    frame = source.read(timeout=2.0)
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np

from edge.camera import Frame
from edge.errors import CameraError

log = logging.getLogger(__name__)


# picamera2's formats name the pixel as a little-endian word, so in memory (numpy) the
# channels come the other way round (its manual, "Image formats"): "RGB888" is [B, G, R],
# "XBGR8888" is [R, G, B, X]. The value says which numpy channels make RGB.
RGB_CHANNELS = {"RGB888": [2, 1, 0], "XRGB8888": [2, 1, 0], "BGR888": [0, 1, 2], "XBGR8888": [0, 1, 2]}


class PiCameraSource:
    """Frames from the first Pi camera as RGB uint8.

    ``RGB888`` is asked for; the format the camera was really configured with decides which
    channels make RGB (``RGB_CHANNELS``).

    Raises:
        CameraError: picamera2 is missing, or no camera could be started.

    Usage:
        source = PiCameraSource(width=640, height=480); frame = source.read(timeout=2.0)
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float | None = None,
                 retries: int = 3, backoff_s: float = 0.1, max_backoff_s: float = 2.0):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise CameraError("picamera2 is not installed (on Raspberry Pi OS: sudo apt install "
                              "python3-picamera2, and use a venv with --system-site-packages)") from None
        self._retries = max(0, retries)
        self._backoff = (backoff_s, max_backoff_s)
        self._stats = {"frames": 0, "unreadable": 0, "retries": 0}
        self._camera = None
        try:
            self._camera = Picamera2()
            controls = {"FrameRate": float(fps)} if fps else {}
            config = self._camera.create_video_configuration(
                main={"size": (int(width), int(height)), "format": "RGB888"}, controls=controls)
            self._camera.configure(config)
            configured = (getattr(self._camera, "camera_config", None) or config)["main"]["format"]
            if configured not in RGB_CHANNELS:
                raise RuntimeError(f"the camera gives {configured} frames, not one of {', '.join(RGB_CHANNELS)}")
            self._channels = RGB_CHANNELS[configured]
            self._camera.start()
        except Exception as err:  # IndexError with no camera attached, RuntimeError from libcamera
            if self._camera is not None:  # else the device stays busy for the OpenCV fallback of "auto"
                with contextlib.suppress(Exception):
                    self._camera.close()
            raise CameraError(f"picamera2: cannot start the camera: {err or type(err).__name__}") from None
        self._closed = False

    def _capture(self, timeout: float | None) -> np.ndarray:
        if timeout is None:
            return self._camera.capture_array("main")
        job = self._camera.capture_array("main", wait=False)
        return self._camera.wait(job, timeout=timeout)

    def read(self, timeout: float | None = None) -> Frame | None:
        """The next frame, retried with back-off; None once closed; ``CameraError`` when the camera stays dead."""
        if self._closed:
            return None
        for attempt in range(self._retries + 1):
            try:
                raw = self._capture(timeout)
                break
            except TimeoutError:
                problem = f"camera timeout: no frame within {timeout:g} s"
                # The timed-out capture stays queued in picamera2 and would hold up every later one
                # (and stop()); cancel_all_and_flush exists for exactly this.
                with contextlib.suppress(Exception):
                    self._camera.cancel_all_and_flush()
            except Exception as err:  # libcamera reports capture failures as RuntimeError
                problem = f"capture failed: {err}"
            if self._closed:
                return None  # closed while waiting (SIGTERM): end the stream instead of retrying
            if attempt == self._retries:
                raise CameraError(f"picamera2: {problem} ({self._retries} retries with back-off failed)")
            self._stats["retries"] += 1
            log.warning("picamera2: %s; retrying", problem)
            time.sleep(min(self._backoff[1], self._backoff[0] * 2 ** attempt))
        rgb = np.ascontiguousarray(raw[..., self._channels])  # also drops a 4th (X) channel
        index = self._stats["frames"]
        self._stats["frames"] += 1
        return Frame(image=rgb, ts=time.time(), index=index)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Not stop() first: on a hung camera it waits behind the stuck capture for ever. picamera2's
        # close() stops the camera itself once the queue is flushed.
        with contextlib.suppress(Exception):
            self._camera.cancel_all_and_flush()
        self._camera.close()

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)
