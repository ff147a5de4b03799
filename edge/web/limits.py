"""What one client address may hold at once: connections, uploads being received.

A single host on the network (a script gone wrong, a scanner, someone unkind) must not take every
connection or upload slot of the page and lock the other visitors out.

Usage:
    uploads = PerClient(2)
    if uploads.enter("192.0.2.7"):
        try: ...receive the upload...
        finally: uploads.leave("192.0.2.7")
"""

from __future__ import annotations

import threading


class PerClient:
    """Counts what each client address holds, at most ``limit`` each (thread-safe)."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def enter(self, client: str) -> bool:
        """Takes one for ``client``; False (nothing taken) when it holds ``limit`` already."""
        with self._lock:
            if self._held.get(client, 0) >= self.limit:
                return False
            self._held[client] = self._held.get(client, 0) + 1
            return True

    def leave(self, client: str) -> None:
        """Gives back one that ``enter`` took."""
        with self._lock:
            left = self._held.get(client, 1) - 1
            if left > 0:
                self._held[client] = left
            else:
                self._held.pop(client, None)
