"""Durable item recording: counted before the flap moves, fsynced beside the sorting loop.

A counted item must survive a kill -9 from the moment the flap moves, and a power cut too. The
sorting loop therefore commits each item itself, just before it commands the flap, without an
fsync (``Store.record_item(durable=False)``: the commit reaches the operating system in well
under a millisecond, so a killed process keeps it). The fsync that makes it survive a power cut
(milliseconds on an SD card) runs on one worker thread while the loop goes on with the next
frames, and ``wait`` (called before the next item is recorded, before a counts reset and at
shutdown) bounds what a power cut can take to the last item. A failed commit is raised on the
loop's thread before the flap moves (the item stays on the tray); a failed fsync is raised by
the next ``record`` or ``wait``, where it is fatal as well.

Usage:
    recorder = Recorder(store, on_recorded=lambda counts: print(counts["total"]))
    counts = recorder.record(event, topic="item")   # committed; the fsync runs on the worker
    recorder.wait()                                 # the last item survives a power cut (or its error is raised here)
    recorder.close()
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from edge.store import Store


class Recorder:
    """Commits items on the calling thread and fsyncs them on one worker thread, one at a time.

    Args:
        store: where items, counts and outbox events live.
        on_recorded: called on the worker thread with the counts once an item survives a power cut.
    """

    def __init__(self, store: Store, on_recorded: Callable[[dict[str, Any]], None] | None = None):
        self.store = store
        self.on_recorded = on_recorded
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._pending: Future | None = None

    def record(self, event: dict[str, Any], topic: str | None) -> dict[str, Any]:
        """Commits ``event`` (see ``Store.record_item``) now and starts its fsync; returns the counts.

        Raises:
            StoreError: this commit failed, or the previous item's fsync did.
        """
        self.wait()
        counts = self.store.record_item(event, topic=topic, durable=False)
        self._pending = self._executor.submit(self._sync, counts)
        return counts

    def _sync(self, counts: dict[str, Any]) -> None:
        self.store.sync()
        if self.on_recorded is not None:
            self.on_recorded(counts)

    def wait(self) -> None:
        """Blocks until the last recorded item survives a power cut; re-raises its error (StoreError) here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Waits for the last item, then stops the worker; safe to call twice."""
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
