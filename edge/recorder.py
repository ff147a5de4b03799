"""Durable item recording beside the sorting loop, so the loop does not sit through each fsync.

A counted item must survive power loss, so every ``Store.record_item`` ends in an fsync
(milliseconds on an SD card). The sorting loop has nothing to wait for in it: the flap has
already moved. So one worker thread commits while the loop goes on with the next frames.
Durability is unchanged: the commit starts the moment the flap is commanded, exactly as
when the loop committed itself, and ``wait`` (called before the next item's flap moves,
before a counts reset and at shutdown) bounds the uncommitted items to one. A commit
error is raised again by the next ``submit`` or ``wait`` on the loop's thread, where it
is fatal as before.

Usage:
    recorder = Recorder(store, on_recorded=lambda counts: print(counts["total"]))
    recorder.submit(event, topic="item")   # returns at once
    recorder.wait()                        # the last item is on disk (or its error raised here)
    recorder.close()
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from edge.store import Store


class Recorder:
    """Commits items to a ``Store`` on one worker thread, in order, one at a time.

    Args:
        store: where items, counts and outbox events live.
        on_recorded: called on the worker thread with the counts after each new item.
    """

    def __init__(self, store: Store, on_recorded: Callable[[dict[str, Any]], None] | None = None):
        self.store = store
        self.on_recorded = on_recorded
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._pending: Future | None = None

    def submit(self, event: dict[str, Any], topic: str | None) -> None:
        """Starts recording ``event`` (see ``Store.record_item``) after the previous one is on disk."""
        self.wait()
        self._pending = self._executor.submit(self._record, event, topic)

    def _record(self, event: dict[str, Any], topic: str | None) -> None:
        counts = self.store.record_item(event, topic=topic)
        if self.on_recorded is not None:
            self.on_recorded(counts)

    def wait(self) -> None:
        """Blocks until the last submitted item is committed; re-raises its error (StoreError) here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        """Waits for the last item, then stops the worker; safe to call twice."""
        try:
            self.wait()
        finally:
            self._executor.shutdown(wait=True)
