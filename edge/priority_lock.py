"""A lock whose urgent holders go first: the sorting loop before web uploads on one interpreter.

The bin has one LiteRT interpreter, shared by the sorting loop and the web page's uploads. With a
plain lock an upload's three views can run back to back while an item waits on the tray, and a
few uploads at once would delay the flap by tens of milliseconds. Here an urgent user announces
itself for a whole stretch of work (``priority``), and while it is there background users wait;
an urgent user waits at most for the one background hold already under way.

Usage:
    lock = PriorityLock()
    with lock.priority():              # the sorting loop, for all K frames of an item
        for frame in frames:
            with lock.hold():
                ...invoke...
    with lock.hold(background=True):   # a web upload, one view at a time
        ...invoke...
"""

from __future__ import annotations

import contextlib
import threading


class PriorityLock:
    """A mutex with two classes of holders; urgent stretches keep background holders out."""

    def __init__(self):
        self._changed = threading.Condition(threading.Lock())
        self._held = False
        self._urgent = 0  # urgent stretches under way (their holders may be between two holds)

    @contextlib.contextmanager
    def priority(self):
        """Marks a stretch of urgent work: until it ends, background holds wait."""
        with self._changed:
            self._urgent += 1
        try:
            yield
        finally:
            with self._changed:
                self._urgent -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def hold(self, background: bool = False):
        """Holds the lock; a ``background`` hold also waits while any urgent stretch is under way."""
        with self._changed:
            while self._held or (background and self._urgent):
                self._changed.wait()
            self._held = True
        try:
            yield
        finally:
            with self._changed:
                self._held = False
                self._changed.notify_all()
