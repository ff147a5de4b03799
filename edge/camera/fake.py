"""A scripted frame source for tests and demos: frames from a list, a generator or a function.

``block_after=N`` makes it behave like a camera that hangs after N frames: ``read``
then waits out its timeout and raises ``CameraError("camera timeout")``, which is
what the daemon's watchdog must notice.

Usage:
    source = open_source("fake", frames=[rgb1, rgb2], block_after=2)
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable

import numpy as np

from edge.camera import Frame
from edge.errors import CameraError


class FakeSource:
    """Yields the given frames, then None (or hangs, with ``block_after``).

    Args:
        frames: RGB arrays or ``Frame`` objects, as an iterable or as a function of the
            frame index that returns an array/Frame, or None to end the stream.
        block_after: after this many frames, every ``read`` blocks until its timeout.
        fps: pace frames like a camera; 0 delivers them as fast as they are read.

    Usage:
        source = FakeSource([rgb] * 10, block_after=5); frame = source.read(timeout=1)
    """

    def __init__(self, frames: Iterable | Callable[[int], object] = (), block_after: int | None = None,
                 fps: float = 0.0):
        if callable(frames):
            self._items = (frames(index) for index in itertools.count())
        else:
            self._items = iter(frames)
        self._block_after = block_after
        self._interval = 1.0 / fps if fps else 0.0
        self._next_due = time.monotonic()
        self._closed = threading.Event()
        self._stats = {"frames": 0, "unreadable": 0, "retries": 0, "timeouts": 0}

    def read(self, timeout: float | None = None) -> Frame | None:
        if self._closed.is_set():
            return None
        if self._block_after is not None and self._stats["frames"] >= self._block_after:
            self._closed.wait(timeout)
            if self._closed.is_set():
                return None
            self._stats["timeouts"] += 1
            raise CameraError("camera timeout")
        item = next(self._items, None)
        if item is None:
            return None
        if self._interval:
            time.sleep(max(0.0, self._next_due - time.monotonic()))
            self._next_due = max(self._next_due, time.monotonic()) + self._interval
        index = self._stats["frames"]
        self._stats["frames"] += 1
        if isinstance(item, Frame):
            return item
        return Frame(image=np.asarray(item), ts=time.time(), index=index)

    def close(self) -> None:
        """Ends the stream and wakes a blocked ``read``."""
        self._closed.set()

    @property
    def stats(self) -> dict[str, int]:
        return dict(self._stats)


class BrokenCamera:
    """Stands in for a camera that could not be (re)opened: every read raises its error, so the
    daemon's usual back-off and reopen handle it like any failing camera.

    Usage:
        source = BrokenCamera(CameraError("the camera is being reopened"))
    """

    stats: dict[str, int] = {}

    def __init__(self, error: CameraError):
        self.error = error

    def read(self, timeout: float | None = None):
        raise self.error

    def close(self) -> None:
        pass
