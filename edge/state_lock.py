"""The state folder's lock: one daemon per folder of counts and outbox.

Two daemons on one state folder (the service, and the same command typed by hand) would fight over
the broker connection and miscount the outbox they share; the second one is refused instead.

Usage:
    handle = lock_state_folder(state_dir / "smartbin.lock")   # held until handle.close()
"""

from __future__ import annotations

import os
from pathlib import Path

from edge.errors import StoreUnusableError


def lock_state_folder(path: Path):
    """Locks ``path`` (created if needed, our pid written into it) for as long as the returned file
    stays open; ``None`` where no lock can be taken (not POSIX, an unreadable file).

    Raises:
        StoreUnusableError: another process holds it; the message names its pid.
        OSError: the file can be neither created nor opened (a read-only state folder).
    """
    try:
        import fcntl
    except ImportError:  # not on POSIX: no lock, as before
        return None
    try:
        handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 -- held open on purpose
    except PermissionError:
        if not path.exists():
            raise  # a read-only state folder: the store names it
        # Made by root (`sudo smartbin run`): locking needs only a read-only handle, and the pid stays unsaid.
        try:
            handle = open(path, encoding="utf-8")  # noqa: SIM115
        except OSError:
            return None  # cannot even read it: the database itself will say what is wrong
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise StoreUnusableError(f"{path.parent}: another smartbin (pid {holder}) is using this state folder; "
                                 f"stop it first, or give this one another --state-dir") from None
    if handle.writable():
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
    return handle
