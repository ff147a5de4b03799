"""A bounded folder of unsure frames, kept so someone can label them later.

File names sort by time and carry the item id, the predicted label and the confidence,
e.g. ``20240501T101530123456_7f3a..._glass_0.41.jpg``; a sorter can move them into class
folders for the next training run.

The sorting loop hands frames over with ``save_later``: the JPEG is encoded and written
on the folder's own writer thread, so an unsure item does not delay the next one.

Usage:
    review = ReviewFolder(state_dir / "review", max_files=500)
    review.save_later(frame.image, item_id, prediction.label, prediction.confidence)
    review.close()   # waits for the frames still being written
"""

from __future__ import annotations

import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edge import imaging

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
NAME = re.compile(r"(\d{8}T\d{12})_([A-Za-z0-9_.-]+)_(\d+\.\d\d)\.jpg", re.ASCII)  # what ``save`` writes
# Frames waiting for the writer: beyond this, save_later waits (a slow card must not fill the memory).
MAX_PENDING = 4


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
        self._pending = threading.BoundedSemaphore(MAX_PENDING)
        self._writer: ThreadPoolExecutor | None = None
        # Left by a power cut or a kill mid-write: never counted against max_files, so gone now.
        for leftover in self.folder.glob(".*.part") if self.folder.is_dir() else ():
            leftover.unlink(missing_ok=True)

    def save_later(self, rgb: np.ndarray, item_id: str, label: str, confidence: float) -> None:
        """``save`` on the writer thread; returns at once unless ``MAX_PENDING`` frames are queued.

        The frame must not be changed afterwards (camera frames are fresh arrays, replay's are
        read-only). A failed save is logged as a warning: review photos are a convenience, the
        item itself is already counted.
        """
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="review-writer")
        self._pending.acquire()
        try:
            self._writer.submit(self._save_and_release, rgb, item_id, label, confidence)
        except BaseException:
            self._pending.release()
            raise

    def _save_and_release(self, rgb: np.ndarray, item_id: str, label: str, confidence: float) -> None:
        try:
            self.save(rgb, item_id, label, confidence)
        except (OSError, ValueError) as err:
            log.warning("review folder: %s", err)
        except Exception:  # noqa: BLE001 -- nobody reads the future: say it here or it is lost
            log.exception("review folder: saving the frame of item %s failed", item_id)
        finally:
            self._pending.release()

    def close(self) -> None:
        """Waits for the frames handed to ``save_later``; safe to call twice."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None

    def save(self, rgb: np.ndarray, item_id: str, label: str, confidence: float) -> Path:
        """Writes the frame as a JPEG (atomically) and returns its path."""
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}_{safe_part(item_id)}_{safe_part(label)}_{confidence:.2f}.jpg"
        data = imaging.encode_jpeg(rgb, quality=90)
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            path = self.folder / name
            partial = path.with_name(f".{name}.part")
            try:
                partial.write_bytes(data)
                os.replace(partial, path)
            except BaseException:
                partial.unlink(missing_ok=True)  # a full card must not keep half a photo it never counts
                raise
            self._prune(keep=path)
        return path

    def files(self) -> list[Path]:
        """The saved frames, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.glob("*.jpg") if not path.name.startswith("."))

    def _prune(self, keep: Path) -> None:
        # Never the file just written: after the clock stepped back (a Pi without a real-time clock
        # before NTP), it sorts first and would otherwise be deleted as soon as it was saved.
        saved = [path for path in self.files() if path != keep]
        for old in saved[: max(0, len(saved) + 1 - self.max_files)]:
            old.unlink(missing_ok=True)


def safe_part(text: str) -> str:
    """``text`` as it appears in a review file name."""
    # Labels and ids come from the model and the network; keep them from escaping the folder.
    return _UNSAFE.sub("-", str(text))[:64] or "-"


def read_name(name: str, labels: list[str] | tuple[str, ...]) -> dict | None:
    """What a review file's name says: ``taken`` (ISO time, UTC), the model's ``guess`` (one of
    ``labels``, None when the model that saved it had another) and its ``confidence``; None when
    ``name`` is no review photo's name."""
    match = NAME.fullmatch(name)
    if not match:
        return None
    stamp, middle, confidence = match.groups()
    try:
        taken = datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=timezone.utc)
    except ValueError:  # month 13: a file someone named by hand
        return None
    # Ids and labels may both hold "_": the guess is the label with the longest safe form that ends the
    # middle part ("brown_glass", not "glass"). Two such labels share one safe form ("стекло" and
    # "бумага" are both "-"): then no guess rather than a wrong one.
    endings = {label: len(safe_part(label)) for label in labels if middle.endswith("_" + safe_part(label))}
    best = [label for label, length in endings.items() if length == max(endings.values())]
    guess = best[0] if len(best) == 1 else None
    return {"name": name, "taken": taken.isoformat(timespec="seconds"), "guess": guess,
            "confidence": float(confidence)}
