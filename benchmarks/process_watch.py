"""Watching the daemon's process from outside: memory, CPU, mapped files and imports (``edge_replay.py``).

Usage:
    memory = watch_process(subprocess.Popen([...]), timeout=900)
    found = forbidden({"imports": imported_modules(log_text), **memory})
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.2  # memory and mapped-file poll (watch_process)
FORBIDDEN_MODULES = ("tensorflow", "keras", "keras_hub", "tf_keras", "training", "converter")


def fail(message: str) -> None:
    """Set-up failures exit 2, so that exit 1 always means a missed target."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def watch_process(process: subprocess.Popen, timeout: float) -> dict:
    """Polls RSS (psutil) and the kernel's high-water mark until the process exits; scans its mapped files.

    The high-water mark holds the peak up to the last poll whatever the interval, so the poll is slow
    (0.2 s; growth in the daemon's last 0.2 s, its shutdown, is missed): on 2 cores this script's own
    CPU would otherwise slow the daemon it measures (a 20 ms poll took 0.5 ms of CPU per item).
    """
    import psutil

    watched = psutil.Process(process.pid)
    peak_rss = high_water = cpu_s = 0.0
    mapped: set[str] = set()
    next_maps = 0.0
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        if time.monotonic() > deadline:
            process.kill()
            fail(f"the daemon did not finish within {timeout:g} s")
        try:
            peak_rss = max(peak_rss, watched.memory_info().rss / 2**20)
            high_water = max(high_water, _vm_hwm_mb(process.pid))
            cpu_s = sum(watched.cpu_times()[:4])  # its own and its children's, up to the last poll
            if time.monotonic() >= next_maps:
                mapped |= _mapped_files(process.pid)
                next_maps = time.monotonic() + 1.0
        except (psutil.NoSuchProcess, OSError):
            break
        time.sleep(POLL_S)
    process.wait()
    return {"peak_rss_polled_mb": peak_rss, "peak_rss_vmhwm_mb": high_water, "mapped_files": sorted(mapped),
            "cpu_s": cpu_s}


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _mapped_files(pid: int) -> set[str]:
    return {line.split(None, 5)[5] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if len(line.split(None, 5)) == 6 and line.split(None, 5)[5].startswith("/")}


def imported_modules(log_text: str) -> list[str]:
    """Module names from ``python -X importtime`` output (``import time: self | cumulative | name``)."""
    names = []
    for line in log_text.splitlines():
        if line.startswith("import time:") and "|" in line and "imported package" not in line:
            names.append(line.rsplit("|", 1)[1].strip())
    return names


def forbidden(run: dict) -> dict[str, list[str]]:
    """Forbidden modules the daemon imported, and mapped files inside those packages' folders."""
    modules = sorted({name for name in run["imports"] if name.split(".")[0] in FORBIDDEN_MODULES})
    folders = []
    for package in ("tensorflow", "keras"):
        spec = importlib.util.find_spec(package)  # locates the package without importing it
        folders += [str(Path(location)) + os.sep for location in (spec.submodule_search_locations or [])] if spec else []
    files = [path for path in run["mapped_files"] if any(path.startswith(folder) for folder in folders)]
    return {"modules": modules, "mapped_files": files}
