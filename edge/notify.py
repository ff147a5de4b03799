"""systemd's sd_notify protocol in a few lines of standard library: READY, WATCHDOG, STOPPING.

Does nothing when ``NOTIFY_SOCKET`` is unset (a laptop, a test, a shell), so callers never
check. The watchdog ping is rate-limited to half of ``WATCHDOG_USEC`` and is only sent when
the caller says a frame arrived recently: a hung camera therefore stops the pings and
systemd restarts the service.

Usage:
    notifier = Notifier.from_environment()
    notifier.ready()                  # after camera, model and flap are up
    notifier.watchdog(frames_flowing=True)
    notifier.stopping()
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify datagrams to systemd (or to nothing).

    Usage:
        Notifier.from_environment().ready()
    """

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None):
        self.address = _socket_address(socket_path) if socket_path else None
        self.watchdog_interval_s = watchdog_usec / 2e6 if watchdog_usec else None
        self._last_ping = 0.0
        self._socket: socket.socket | None = None

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> Notifier:
        """Reads ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC`` (honouring ``WATCHDOG_PID``) like sd_watchdog_enabled."""
        env = os.environ if environ is None else environ
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if pid and pid.isdigit() and int(pid) != os.getpid():
            usec = None  # the watchdog is meant for another process (e.g. our parent shell script)
        return cls(env.get("NOTIFY_SOCKET") or None, int(usec) if usec and usec.isdigit() else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_enabled(self) -> bool:
        return self.enabled and self.watchdog_interval_s is not None

    def ready(self, status: str = "sorting") -> None:
        self.send(f"READY=1\nSTATUS={status}\nMAINPID={os.getpid()}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def watchdog(self, frames_flowing: bool = True) -> bool:
        """Pings the watchdog if frames are flowing and half the interval has passed; returns whether it pinged."""
        if not self.watchdog_enabled or not frames_flowing:
            return False
        now = time.monotonic()
        if now - self._last_ping < self.watchdog_interval_s:
            return False
        self._last_ping = now
        self.send("WATCHDOG=1")
        return True

    def send(self, message: str) -> None:
        """Sends one datagram; failures are logged, never raised (the bin keeps sorting)."""
        if self.address is None:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode(), self.address)
        except OSError as err:
            log.warning("sd_notify to %s failed: %s", self.address, err)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _socket_address(path: str) -> str | bytes:
    # '@' marks Linux's abstract namespace, whose address starts with a NUL byte.
    return b"\0" + path[1:].encode() if path.startswith("@") else path
