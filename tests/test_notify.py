"""sd_notify: silent without NOTIFY_SOCKET, real datagrams to a socket (also abstract), watchdog gating."""

from __future__ import annotations

import os
import socket
import uuid

from edge.notify import Notifier


def bound_socket(address):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


def test_without_notify_socket_everything_is_a_no_op():
    notifier = Notifier.from_environment({})
    notifier.ready()
    assert notifier.watchdog() is False
    notifier.stopping()
    assert not notifier.enabled


def test_ready_and_stopping_reach_a_path_socket(tmp_path):
    path = str(tmp_path / "notify")
    with bound_socket(path) as sock:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path})
        notifier.ready()
        notifier.stopping()
        assert sock.recv(1024).decode().splitlines()[0] == "READY=1"
        assert sock.recv(1024) == b"STOPPING=1"


def test_abstract_namespace_sockets_are_supported():
    name = f"smartbin-test-{uuid.uuid4().hex}"
    with bound_socket(b"\0" + name.encode()) as sock:
        Notifier.from_environment({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert sock.recv(1024) == b"STATUS=hello"


def test_watchdog_pings_only_while_frames_flow_and_at_half_the_interval(tmp_path):
    path = str(tmp_path / "notify")
    with bound_socket(path) as sock:
        notifier = Notifier.from_environment({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        assert notifier.watchdog_interval_s == 0.1
        assert notifier.watchdog(frames_flowing=False) is False
        assert notifier.watchdog(frames_flowing=True) is True
        assert notifier.watchdog(frames_flowing=True) is False  # rate-limited
        assert sock.recv(1024) == b"WATCHDOG=1"


def test_a_watchdog_meant_for_another_pid_is_ignored(tmp_path):
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "1000000",
                                          "WATCHDOG_PID": str(os.getpid() + 1)})
    assert not notifier.watchdog_enabled


def test_a_dead_socket_is_logged_not_raised(tmp_path, caplog):
    Notifier.from_environment({"NOTIFY_SOCKET": str(tmp_path / "missing")}).ready()
    assert "sd_notify" in caplog.text
