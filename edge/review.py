"""A bounded folder of unsure frames, kept so someone can label them later.

File names sort by time and carry the item id, the predicted label and the confidence,
e.g. ``20240501T101530123456_7f3a..._glass_0.41.jpg``; a sorter can move them into class
folders for the next training run.

Usage:
    review = ReviewFolder(state_dir / "review", max_files=500)
    review.save(frame.image, item_id, prediction.label, prediction.confidence)
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge import imaging

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class ReviewFolder:
    """Saves JPEGs and deletes the oldest once more than ``max_files`` are kept.

    Usage:
        path = ReviewFolder(Path("state/review")).save(rgb, "item-1", "glass", 0.41)
    """

    def __init__(self, folder: Path, max_files: int = 500):
        if max_files < 1:
            raise ValueError(f"max_files must be at least 1, got {max_files}")
        self.folder = Path(folder)
        self.max_files = max_files
        self._lock = threading.Lock()

    def save(self, rgb: np.ndarray, item_id: str, label: str, confidence: float) -> Path:
        """Writes the frame as a JPEG (atomically) and returns its path."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}_{_safe(item_id)}_{_safe(label)}_{confidence:.2f}.jpg"
        data = imaging.encode_jpeg(rgb, quality=90)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / name
            partial = path.with_name(f".{name}.part")
            partial.write_bytes(data)
            os.replace(partial, path)
            self._prune()
        return path

    def files(self) -> list[Path]:
        """The saved frames, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.glob("*.jpg") if not path.name.startswith("."))

    def _prune(self) -> None:
        saved = self.files()
        for old in saved[: max(0, len(saved) - self.max_files)]:
            old.unlink(missing_ok=True)


def _safe(text: str) -> str:
    # Labels and ids come from the model and the network; keep them from escaping the folder.
    return _UNSAFE.sub("-", str(text))[:64] or "-"
