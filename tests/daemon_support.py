"""Helpers for the in-process daemon tests: a config on the tiny model, a daemon in a thread, a part that fails.

Usage:
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=1)
"""

from __future__ import annotations

import threading

from edge.config import config_from_dict
from edge.daemon import Daemon

ROOT = "smartbin/bin-d"
ANGLES = {"paper": -60.0, "glass": -20.0, "packaging": 20.0, "rest": 60.0}


def daemon_config(tmp_path, bundle, photos=None, broker=None, **sections):
    """A validated config: replay of ``photos`` (else a fake camera), mock flap, MQTT on ``broker`` if given;
    ``sections`` update single sections (``flap={"settle_s": 0.1}``)."""
    data = {
        "device": {"id": "bin-d", "state_dir": str(tmp_path / "state")},
        "model": {"path": str(bundle)},
        "camera": {"type": "replay", "replay": {"path": str(photos), "fps": 0, "empty_frames": 3,
                                                "present_frames": 4}} if photos else {"type": "fake"},
        "flap": {"pin_factory": "mock", "settle_s": 0, "angles": ANGLES},
        "decision": {"bins": {"cardboard": "paper", "glass": "glass", "metal": "packaging"}, "reject_bin": "rest",
                     "min_confidence": 0.5},
    }
    if broker is not None:
        data["mqtt"] = {"enabled": True, "port": broker.port, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5}
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return config_from_dict(data)


def run_in_thread(daemon: Daemon) -> threading.Thread:
    """``daemon.run()`` on a daemon thread, started."""
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    return thread


def drain(systemd_socket) -> list[str]:
    """Every sd_notify message the fake systemd socket has received so far."""
    messages = []
    try:
        while True:
            messages.append(systemd_socket.recv(1024).decode())
    except TimeoutError:
        return messages


def photo_count(folder) -> int:
    """The replay photos under ``folder``."""
    return sum(1 for path in folder.rglob("*.jpg"))


def started_with_a_fault(tmp_path, tiny_bundle, photo_folder, part: str, method: str, error: Exception) -> Daemon:
    """A one-item daemon whose ``part.method`` raises ``error``."""
    daemon = Daemon(daemon_config(tmp_path, tiny_bundle, photo_folder), max_items=1)
    daemon.start()

    def broken(*args, **kwargs):
        raise error

    setattr(getattr(daemon, part), method, broken)
    return daemon
