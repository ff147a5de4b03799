"""The state database's tables: created when missing, and refused when a table of ours is someone else's.

Usage:
    create_tables(db, path)   # after opening; raises StoreUnusableError for another program's database
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.errors import StoreUnusableError

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


# The columns of SCHEMA the store reads and writes (checked on opening, by create_tables).
SCHEMA_COLUMNS = {
    "items": {"id", "ts", "label", "bin", "confidence", "rejected", "truth", "event"},
    "counts": {"scope", "kind", "name", "n"},
    "outbox": {"seq", "topic", "payload", "created"},
    "meta": {"key", "value"},
}


def create_tables(db: sqlite3.Connection, path: Path) -> None:
    """Creates the missing tables, then checks every table has the columns the store uses.

    Raises:
        StoreUnusableError: a table of ours lacks a column: the file is another program's database.
    """
    db.executescript(SCHEMA)
    # CREATE TABLE IF NOT EXISTS keeps another program's table of the same name: found now, in one
    # line, rather than as "no such column" from the first query (and a restart loop under systemd).
    for table, columns in SCHEMA_COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        missing = sorted(columns - have)
        if missing:
            raise StoreUnusableError(
                f"{path}: not a smartbin state database (its table {table!r} has no column "
                f"{', '.join(missing)}): point device.state_dir at another folder or move the file aside")
