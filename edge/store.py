"""Durable counts and the MQTT outbox in one SQLite file (WAL mode) in the state folder.

``record_item`` writes the item, its counts and its outbox message in ONE transaction, so a
kill -9 or a power cut either keeps all three or none of them; an item id seen before is
counted once. The MQTT side reads ``pending`` messages and deletes them with
``mark_delivered`` once the broker acknowledged them, which makes delivery at-least-once
with stable ids across restarts.

Usage:
    store = Store("/var/lib/smartbin/smartbin.db")
    counts = store.record_item({"id": "ab12", "ts": 1.0, "label": "glass", "bin": "glass", ...})
    for message in store.pending(50):
        ...publish, then: store.mark_delivered([message.seq])
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    label TEXT NOT NULL,
    bin TEXT NOT NULL,
    confidence REAL NOT NULL,
    rejected INTEGER NOT NULL,
    truth TEXT,
    event TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counts (
    scope TEXT NOT NULL,      -- 'install' (never reset) or 'reset' (since the last reset_counts)
    kind TEXT NOT NULL,       -- 'label', 'bin' or 'total'
    name TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (scope, kind, name)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,      -- relative to <prefix>/<device_id>/
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class OutboxMessage:
    """One undelivered message; ``seq`` orders the outbox and names the row to delete."""

    seq: int
    topic: str
    payload: str


class Store:
    """The SQLite state: items, counts since install and since reset, and the outbox.

    One connection shared by the daemon loop and the MQTT thread behind a lock: writes are
    tiny and rare (one per item), so a lock is simpler than a connection per thread.

    Usage:
        store = Store(state_dir / "smartbin.db"); store.counts()["total"]
    """

    def __init__(self, path: str | os.PathLike, max_outbox: int = 100_000, max_items: int = 100_000):
        self.path = Path(path)
        self.max_outbox = max_outbox
        self.max_items = max_items
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every commit fsyncs the log, so an item counted survives a power cut, not
            # only a crash (NORMAL would survive kill -9 but may lose the last commits on power loss).
            # One fsync per sorted item costs a few ms at most a few times a second.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            with self._transaction():
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('installed_at', ?)", (str(time.time()),))
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('reset_at', ?)", (str(time.time()),))
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot open the state database: {err}") from None
        except OSError as err:  # the state folder cannot be made (read-only, wrong owner, ...)
            raise StoreError(f"{self.path}: cannot open the state database: {err.strerror or err}") from None
        # Kept in memory too, so stats and status pages can read it without a query (also after close).
        self.outbox_dropped = int(self.meta("outbox_dropped", "0"))

    def record_item(self, event: dict[str, Any], topic: str | None = "item") -> dict[str, Any]:
        """Stores an item, bumps its counts and queues its event, atomically.

        Args:
            event: JSON-ready item event with at least ``id``, ``ts``, ``label``, ``bin``, ``confidence``.
            topic: outbox topic, relative to the device's topic root; ``None`` queues nothing (MQTT off).

        Returns:
            The counts after this item (unchanged when the id was recorded before).
        """
        payload = json.dumps(event, separators=(",", ":"), sort_keys=True)
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event["id"], event["ts"], event["label"], event["bin"], float(event["confidence"]),
                 int(bool(event.get("rejected"))), event.get("truth"), payload),
            )
            if cursor.rowcount:
                # The counts table holds the totals; the item log only needs its recent past (the status
                # page, re-recorded ids), so it must not fill the SD card of a bin that runs for years.
                self._db.execute("DELETE FROM items WHERE rowid <= ?", (cursor.lastrowid - self.max_items,))
                for scope in ("install", "reset"):
                    for kind, name in (("label", event["label"]), ("bin", event["bin"]), ("total", "")):
                        self._db.execute(
                            "INSERT INTO counts VALUES (?, ?, ?, 1) "
                            "ON CONFLICT (scope, kind, name) DO UPDATE SET n = n + 1", (scope, kind, name))
                if topic is not None:
                    self._db.execute("INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)",
                                     (topic, payload, time.time()))
                    self._trim_outbox()
            return self._counts()

    def pending(self, limit: int = 100, after: int = 0) -> list[OutboxMessage]:
        """The oldest undelivered messages with ``seq > after``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        return [OutboxMessage(*row) for row in rows]

    def mark_delivered(self, seqs: list[int]) -> None:
        """Deletes acknowledged messages from the outbox."""
        if not seqs:
            return
        with self._lock:
            # No fsync for deletes: losing one in a power cut only re-sends an event with the same id,
            # which consumers de-duplicate. The next item's FULL commit makes it durable anyway. This
            # keeps the MQTT thread from holding the lock through an fsync while the bin is sorting.
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                with self._transaction():
                    self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs])
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def outbox_size(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def counts(self) -> dict[str, Any]:
        """Counts since install with a ``since_reset`` block: ``{labels, bins, total, since_reset}``."""
        with self._lock:
            return self._counts()

    def reset_counts(self) -> dict[str, Any]:
        """Zeroes the since-reset counts (since-install counts are kept) and returns the new counts."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM counts WHERE scope = 'reset'")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('reset_at', ?)", (str(time.time()),))
            return self._counts()

    def has_item(self, item_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is not None

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last items' events, newest first."""
        with self._lock:
            rows = self._db.execute("SELECT event FROM items ORDER BY ts DESC, rowid DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _counts(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for scope in ("install", "reset"):
            block: dict[str, Any] = {"labels": {}, "bins": {}, "total": 0}
            for kind, name, n in self._db.execute(
                    "SELECT kind, name, n FROM counts WHERE scope = ? ORDER BY kind, name", (scope,)):
                if kind == "total":
                    block["total"] = n
                else:
                    block[f"{kind}s"][name] = n
            result[scope] = block
        reset_at = self._db.execute("SELECT value FROM meta WHERE key = 'reset_at'").fetchone()
        counts = result["install"]
        counts["since_reset"] = {**result["reset"], "reset_at": float(reset_at[0]) if reset_at else None}
        return counts

    def _trim_outbox(self) -> None:
        # A broker gone for months must not fill the SD card: drop the oldest, and count what was dropped.
        excess = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_outbox
        if excess > 0:
            self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                             (excess,))
            self._db.execute("INSERT INTO meta VALUES ('outbox_dropped', ?) ON CONFLICT (key) DO UPDATE "
                             "SET value = CAST(value AS INTEGER) + ?", (str(excess), excess))
            self.outbox_dropped += excess

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection runs in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
        return False
