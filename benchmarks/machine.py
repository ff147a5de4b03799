"""Helpers every benchmark script shares: what machine this is, and percentiles.

Usage:
    from machine import cpu_model, percentile   # benchmarks run as scripts from this folder
"""

from __future__ import annotations

import math

import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100): the smallest value with at least q % at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
