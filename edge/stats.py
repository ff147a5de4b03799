"""Running figures of the daemon for the `stats` topic and the status page.

Cheap to update from the sorting loop (a counter or a deque append per call); the
snapshot computes means and percentiles only when asked.

Usage:
    stats = Stats()
    stats.frame(); stats.item(inference_ms=12.5)
    print(stats.snapshot(outbox=0))
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any

CPU_TEMPERATURE = Path("/sys/class/thermal/thermal_zone0/temp")


class Stats:
    """Frames per second, items, inference times (last ``window`` items), dropped and unreadable frames.

    Usage:
        stats = Stats(); stats.frame(); stats.snapshot()
    """

    def __init__(self, window: int = 200, fps_window_s: float = 10.0):
        self.started = time.time()
        self._started_monotonic = time.monotonic()
        self.frames = 0
        self.items = 0
        self.dropped_frames = 0
        self.unreadable_frames = 0
        self.camera_errors = 0
        self.flap_errors = 0
        self.last_frame_at: float | None = None  # monotonic
        self._inference_ms: collections.deque[float] = collections.deque(maxlen=window)
        self._decision_ms: collections.deque[float] = collections.deque(maxlen=window)
        self._frame_times: collections.deque[float] = collections.deque()
        self._fps_window_s = fps_window_s
        self._lock = threading.Lock()

    def frame(self) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames += 1
            self.last_frame_at = now
            self._frame_times.append(now)
            while self._frame_times and now - self._frame_times[0] > self._fps_window_s:
                self._frame_times.popleft()

    def item(self, inference_ms: float, decision_ms: float | None = None) -> None:
        with self._lock:
            self.items += 1
            self._inference_ms.append(inference_ms)
            if decision_ms is not None:
                self._decision_ms.append(decision_ms)

    def unreadable(self, n: int = 1) -> None:
        with self._lock:
            self.unreadable_frames += n

    def dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped_frames += n

    def camera_error(self) -> None:
        with self._lock:
            self.camera_errors += 1

    def flap_error(self) -> None:
        with self._lock:
            self.flap_errors += 1

    def seconds_since_frame(self) -> float | None:
        return None if self.last_frame_at is None else time.monotonic() - self.last_frame_at

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started_monotonic

    def snapshot(self, **extra: Any) -> dict[str, Any]:
        """The `stats` payload: ``fps``, ``items``, inference ms mean/p90, drops, uptime, CPU temperature."""
        with self._lock:
            now = time.monotonic()
            times = [t for t in self._frame_times if now - t <= self._fps_window_s]
            span = min(self._fps_window_s, now - self._started_monotonic)
            inference = sorted(self._inference_ms)
            decision = sorted(self._decision_ms)
            data = {
                "fps": round(len(times) / span, 2) if span > 0 else 0.0,
                "frames": self.frames,
                "items": self.items,
                "inference_ms_mean": round(sum(inference) / len(inference), 2) if inference else None,
                "inference_ms_p90": round(percentile(inference, 90), 2) if inference else None,
                "decision_ms_p50": round(percentile(decision, 50), 2) if decision else None,
                "decision_ms_p90": round(percentile(decision, 90), 2) if decision else None,
                "dropped_frames": self.dropped_frames,
                "unreadable_frames": self.unreadable_frames,
                "camera_errors": self.camera_errors,
                "flap_errors": self.flap_errors,
                "uptime_s": round(self.uptime_s, 1),
                "cpu_temperature_c": cpu_temperature(),
            }
        data.update(extra)
        return data


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values (numpy's default method)."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = (len(sorted_values) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def cpu_temperature() -> float | None:
    """The SoC temperature in °C when the kernel exposes it (always on a Pi), else ``None``."""
    try:
        return round(int(CPU_TEMPERATURE.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None
