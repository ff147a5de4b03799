"""Durable counts and the MQTT outbox in one SQLite file (WAL mode) in the state folder.

``record_item`` writes the item, its counts and its outbox message in ONE transaction, so a
kill -9 or a power cut either keeps all three or none of them; an item id seen before is
counted once. Each write says how durable it must be: ``durable=True`` ends in an fsync (it
survives a power cut), ``durable=False`` only reaches the operating system (it survives a kill
-9 in under a millisecond) until ``sync`` or the next durable write fsyncs the log, which
covers every earlier commit. The MQTT side reads ``pending`` messages and deletes them with
``mark_delivered`` once the broker acknowledged them, which makes delivery at-least-once with
stable ids across restarts. Every SQLite failure (disk full, read-only, I/O error) is raised
as a ``StoreError`` naming the file.

Usage:
    store = Store("/var/lib/smartbin/smartbin.db")
    counts = store.record_item({"id": "ab12", "ts": 1.0, "label": "glass", "bin": "glass", ...})
    for message in store.pending(50):
        ...publish, then: store.mark_delivered([message.seq])
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import StoreError, StoreUnusableError
from edge.state_lock import lock_state_folder
from edge.store_schema import create_tables

CHECKPOINT_EVERY_WRITES = 200  # a few hundred KB of log between checkpoints
SQLITE_CORRUPT, SQLITE_NOTADB = 11, 26  # primary result codes: a damaged file, or not a database at all


@dataclass(frozen=True)
class OutboxMessage:
    """One undelivered message; ``seq`` orders the outbox and names the row to delete."""

    seq: int
    topic: str
    payload: str


class Store:
    """The SQLite state: items, counts since install and since reset, and the outbox.

    One connection shared by the daemon loop, the recorder and the MQTT thread behind a lock:
    writes are tiny and rare (one per item), so a lock is simpler than a connection per thread.
    SQLite's automatic checkpoint is off: it would run inside whichever commit crosses its
    threshold, often the sorting loop's just before the flap moves; ``sync`` checkpoints instead.

    Usage:
        store = Store(state_dir / "smartbin.db"); store.counts()["total"]
    """

    def __init__(self, path: str | os.PathLike, max_outbox: int = 100_000, max_items: int = 100_000):
        self.path = Path(path)
        self.max_outbox = max_outbox
        self.max_items = max_items
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._lock_file = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = lock_state_folder(self.path.with_suffix(".lock"))
            # What a killed process committed without an fsync may still sit in the page cache only:
            # flushed first, everything found on opening survives a power cut from here on. Before
            # SQLite opens the file, never after: closing any descriptor of it would drop the locks
            # SQLite holds on it (POSIX locks are per process), and the next outside reader (a backup,
            # `sqlite3`) would then take itself for the last user and delete the write-ahead log.
            self._fsync_files()
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            # WAL: a commit appends to the log, so the durability of each write can be chosen (see
            # _Transaction) and readers never wait for a writer. Some file systems cannot do it.
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"{self.path}: this file system cannot hold SQLite's write-ahead log "
                                 f"(journal mode stays {mode!r}); put the state folder on a local disk")
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            create_tables(self._db, self.path)
            with self._transaction(durable=True):
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('installed_at', ?)", (str(time.time()),))
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('reset_at', ?)", (str(time.time()),))
            # Kept in memory, so stats and status pages read them without a query (also after close).
            self._outbox_size = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            row = self._db.execute("SELECT value FROM meta WHERE key = 'outbox_dropped'").fetchone()
            self.outbox_dropped = int(row[0]) if row else 0
            # Outbox rows up to this seq survive a power cut; only those are handed to MQTT, so the
            # broker never holds an item the bin could still lose.
            self._durable_seq = self._last_seq = self._db.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
            # Likewise the counts: the latest commit's, and the last ones that survive a power cut (MQTT's).
            self._latest_counts = self._durable_counts = self._counts()
        except StoreError:
            self._close_quietly()
            raise
        except sqlite3.Error as err:
            self._close_quietly()
            if getattr(err, "sqlite_errorcode", 0) & 0xFF in (SQLITE_CORRUPT, SQLITE_NOTADB):
                raise StoreUnusableError(
                    f"{self.path}: the state database is damaged ({err}): move it aside with its -wal and -shm "
                    f"files (the counts then start again at 0) or put back a backup, then start again") from None
            raise StoreError(f"{self.path}: cannot open the state database: {err}") from None
        except (FileExistsError, NotADirectoryError):  # a file where the state folder should be: a person must act
            self._close_quietly()
            raise StoreUnusableError(f"{self.path}: cannot open the state database: {self.path.parent} "
                                     f"is not a folder (a file is in the way)") from None
        except OSError as err:  # the state folder cannot be made (read-only, wrong owner, ...)
            self._close_quietly()
            raise StoreError(f"{self.path}: cannot open the state database: {err.strerror or err}") from None
        self._writes_since_checkpoint = 0
        self._last_item_seq: tuple[str, int] | None = None  # (item id, its outbox seq), for amend_item

    def record_item(self, event: dict[str, Any], topic: str | None = "item", durable: bool = True) -> dict[str, Any]:
        """Stores an item, bumps its counts and queues its event, atomically.

        Args:
            event: JSON-ready item event with at least ``id``, ``ts``, ``label``, ``bin``, ``confidence``.
            topic: outbox topic, relative to the device's topic root; ``None`` queues nothing (MQTT off).
            durable: fsync before returning (survives a power cut); ``False`` survives a kill -9 and
                waits for ``sync`` to survive a power cut (and to be handed to MQTT).

        Returns:
            The counts after this item (unchanged when the id was recorded before).

        Raises:
            StoreError: the write failed (disk full, read-only, I/O error); nothing of the item was kept.
        """
        payload = json.dumps(event, separators=(",", ":"), sort_keys=True)
        seq = dropped = 0
        with self._lock:
            with self._writing("record an item", durable):
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
                        seq = self._db.execute("INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)",
                                               (topic, payload, time.time())).lastrowid
                        dropped = self._trim_outbox()
                counts = self._counts()
            # After the commit: a rolled-back item changed nothing.
            if seq:
                self._outbox_size += 1 - dropped
                self.outbox_dropped += dropped
                self._last_seq = seq
                self._last_item_seq = (event["id"], seq)
                if durable:
                    self._durable_seq = seq
            self._latest_counts = counts
            if durable:
                self._durable_counts = counts
        return copy.deepcopy(counts)

    def sync(self) -> None:
        """Makes every commit so far survive a power cut and hands it to MQTT: one small durable commit,
        whose fsync of the log covers the earlier ``durable=False`` ones. Checkpoints the log now and
        then (on the caller's thread, which is the recorder's, not the sorting loop's).

        Raises:
            StoreError: the write failed.
        """
        with self._lock:
            last_seq, latest_counts = self._last_seq, self._latest_counts
            with self._writing("sync the state database", durable=True):
                self._db.execute("INSERT INTO meta VALUES ('synced_at', ?) ON CONFLICT (key) DO UPDATE "
                                 "SET value = excluded.value", (str(time.time()),))
            self._durable_seq = max(self._durable_seq, last_seq)
            self._durable_counts = latest_counts
            if self._writes_since_checkpoint >= CHECKPOINT_EVERY_WRITES:
                with self._reading("checkpoint the write-ahead log"):
                    # PASSIVE: copies what it can without waiting; it fsyncs the log first and the database after.
                    self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self._writes_since_checkpoint = 0

    def amend_item(self, item_id: str, **fields: Any) -> None:
        """Adds ``fields`` to a recorded item's stored event and, for the newest item, to its outbox
        message, durably.

        For facts known only after the item was recorded (a flap that failed to move). A message the
        MQTT link took from the outbox before the amendment goes out without the new fields.
        """
        with self._lock, self._writing("amend an item", durable=True):
            row = self._db.execute("SELECT event FROM items WHERE id = ?", (item_id,)).fetchone()
            if row is None:
                return
            amended = json.dumps({**json.loads(row[0]), **fields}, separators=(",", ":"), sort_keys=True)
            self._db.execute("UPDATE items SET event = ? WHERE id = ?", (amended, item_id))
            if self._last_item_seq is not None and self._last_item_seq[0] == item_id:
                self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (amended, self._last_item_seq[1]))

    def pending(self, limit: int = 100, after: int = 0) -> list[OutboxMessage]:
        """The oldest undelivered messages with ``seq > after`` that survive a power cut."""
        with self._lock, self._reading("read the outbox"):
            rows = self._db.execute("SELECT seq, topic, payload FROM outbox WHERE seq > ? AND seq <= ? "
                                    "ORDER BY seq LIMIT ?", (after, self._durable_seq, limit)).fetchall()
        return [OutboxMessage(*row) for row in rows]

    def mark_delivered(self, seqs: list[int]) -> None:
        """Deletes acknowledged messages from the outbox."""
        if not seqs:
            return
        # Not durable: losing a delete in a power cut only re-sends an event with the same id, which
        # consumers de-duplicate, and the next durable write fsyncs it anyway. This keeps the MQTT
        # thread from holding the lock through an fsync while the bin is sorting.
        with self._lock:
            with self._writing("remove delivered messages", durable=False):
                deleted = self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(seq,) for seq in seqs]).rowcount
            self._outbox_size -= max(deleted, 0)

    def outbox_size(self) -> int:
        """Undelivered messages, counted as they come and go (no query)."""
        return self._outbox_size

    def counts(self) -> dict[str, Any]:
        """Counts since install with a ``since_reset`` block: ``{labels, bins, total, since_reset}``,
        as of the latest commit (what the bin has sorted; the last item may not survive a power cut yet)."""
        with self._lock, self._reading("read the counts"):
            return self._counts()

    def durable_counts(self) -> dict[str, Any]:
        """The counts as of the last commit that survives a power cut (no query): what the bin
        publishes, so a retained total never includes an item a power cut could still take away."""
        with self._lock:
            return copy.deepcopy(self._durable_counts)

    def reset_counts(self) -> dict[str, Any]:
        """Zeroes the since-reset counts (since-install counts are kept) and returns the new counts."""
        with self._lock:
            with self._writing("reset the counts", durable=True):
                self._db.execute("DELETE FROM counts WHERE scope = 'reset'")
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('reset_at', ?)", (str(time.time()),))
                counts = self._counts()
            # The durable commit also covers every earlier one.
            self._latest_counts = self._durable_counts = counts
            self._durable_seq = max(self._durable_seq, self._last_seq)
            return copy.deepcopy(counts)

    def has_item(self, item_id: str) -> bool:
        with self._lock, self._reading("read the item log"):
            return self._db.execute("SELECT 1 FROM items WHERE id = ?", (item_id,)).fetchone() is not None

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last items' events, newest first."""
        with self._lock, self._reading("read the item log"):
            rows = self._db.execute("SELECT event FROM items ORDER BY ts DESC, rowid DESC LIMIT ?",
                                    (limit,)).fetchall()
        return [json.loads(row[0]) for row in rows]

    def newest_item_if_delivered(self) -> dict[str, Any] | None:
        """The newest recorded item's event (by insertion, not by its clock), when the outbox is empty:
        then it is delivered, so it also survives a power cut. ``None`` otherwise or when there is none."""
        with self._lock, self._reading("read the item log"):
            if self._outbox_size:
                return None
            row = self._db.execute("SELECT event FROM items ORDER BY rowid DESC LIMIT 1").fetchone()
        return json.loads(row[0]) if row else None

    def meta(self, key: str, default: str | None = None) -> str | None:
        with self._lock, self._reading("read the meta table"):
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Stores ``value`` under ``key`` in the meta table (made durable by the next item's fsync).

        Raises:
            StoreError: the write failed.
        """
        with self._lock, self._writing("write the meta table", durable=False):
            self._db.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                             (key, value))

    def close(self) -> None:
        with self._lock:
            self._close_quietly()

    def _close_quietly(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the lock
            self._lock_file = None

    def _counts(self) -> dict[str, Any]:
        return _counts_in(self._db)

    def _fsync_files(self) -> None:
        for path in (self.path, self.path.with_name(self.path.name + "-wal")):
            try:
                descriptor = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)

    def _trim_outbox(self) -> int:
        # A broker gone for months must not fill the SD card: drop the oldest beyond max_outbox and count
        # them. The size is known without a COUNT(*) of a table that is at its largest exactly now.
        excess = self._outbox_size + 1 - self.max_outbox  # + 1: the row just inserted
        if excess <= 0:
            return 0
        self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)", (excess,))
        self._db.execute("INSERT INTO meta VALUES ('outbox_dropped', ?) ON CONFLICT (key) DO UPDATE "
                         "SET value = CAST(value AS INTEGER) + ?", (str(excess), excess))
        return excess

    @contextlib.contextmanager
    def _writing(self, what: str, durable: bool):
        """One write transaction (the caller holds the lock); any SQLite failure becomes a StoreError naming the file."""
        with self._reading(what):
            with self._transaction(durable):
                yield
        self._writes_since_checkpoint += 1

    @contextlib.contextmanager
    def _reading(self, what: str):
        """Turns any SQLite failure (a corrupt file, an I/O error) into a StoreError naming the file."""
        try:
            yield
        except sqlite3.Error as err:
            raise StoreError(f"{self.path}: cannot {what}: {err}") from None

    def _transaction(self, durable: bool):
        return _Transaction(self._db, durable)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (the connection runs in autocommit mode).

    ``durable`` picks the commit's ``synchronous`` level: in WAL mode FULL fsyncs the log at the
    commit (a power cut keeps it), NORMAL only writes it (a crash of the process keeps it).
    """

    def __init__(self, db: sqlite3.Connection, durable: bool):
        self._db = db
        self._durable = durable

    def __enter__(self):
        self._db.execute(f"PRAGMA synchronous={'FULL' if self._durable else 'NORMAL'}")
        self._db.execute("BEGIN IMMEDIATE")
        return self._db

    def __exit__(self, kind, value, traceback):
        if kind is None:
            try:
                self._db.execute("COMMIT")
                return False
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()
        return False

    def _rollback(self) -> None:
        if self._db.in_transaction:  # SQLite rolls back by itself on a full disk or an I/O error
            with contextlib.suppress(sqlite3.Error):  # the error being raised is the one that matters
                self._db.execute("ROLLBACK")


def read_counts(path: str | os.PathLike) -> dict[str, Any]:
    """The counts as ``Store.counts`` gives them, read without opening the store: works while the
    daemon holds it (what a restarted process would find) and changes no data (SQLite may still
    create the ``-wal`` and ``-shm`` files of a closed database, so the folder must be writable).

    Raises:
        StoreError: the database cannot be read.
    """
    try:
        with contextlib.closing(sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)) as db:
            return _counts_in(db)
    except sqlite3.Error as err:
        raise StoreError(f"{path}: cannot read the counts: {err}") from None


def _counts_in(db: sqlite3.Connection) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for scope in ("install", "reset"):
        block: dict[str, Any] = {"labels": {}, "bins": {}, "total": 0}
        for kind, name, n in db.execute("SELECT kind, name, n FROM counts WHERE scope = ? ORDER BY kind, name", (scope,)):
            if kind == "total":
                block["total"] = n
            else:
                block[f"{kind}s"][name] = n
        result[scope] = block
    reset_at = db.execute("SELECT value FROM meta WHERE key = 'reset_at'").fetchone()
    counts = result["install"]
    counts["since_reset"] = {**result["reset"], "reset_at": float(reset_at[0]) if reset_at else None}
    return counts

