"""The house rules of edge/, checked on the source: each outside library is touched by one module
(gpiozero's pin factories are the model: the rest of the daemon works on plain data), and edge/
imports nothing from training/ or converter/."""

from __future__ import annotations

import ast
from pathlib import Path

EDGE = Path(__file__).resolve().parents[1] / "edge"

# library -> the only edge modules that import it
OWNERS = {
    "paho": {"mqtt.py"},
    "gpiozero": {"gpio.py"},
    "ai_edge_litert": {"classifier.py"},
    "picamera2": {"camera/picamera.py"},
    "cv2": {"imaging.py", "camera/opencv.py"},  # pixels, and the OpenCV camera's VideoCapture
    "sqlite3": {"store.py", "store_schema.py"},  # the store, and its tables
    "prometheus_client": {"web/metrics.py"},
    "tensorflow": set(),
    "keras": set(),
    "training": set(),
    "converter": set(),
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_each_outside_library_is_touched_by_one_edge_module():
    users = {library: set() for library in OWNERS}
    for path in EDGE.rglob("*.py"):
        for root in imported_roots(path) & OWNERS.keys():
            users[root].add(path.relative_to(EDGE).as_posix())
    assert users == OWNERS
