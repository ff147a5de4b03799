"""Label the bin's review photos from the web page, so they can train the next model.

The bin keeps the frames it was unsure about in ``<state>/review/`` (``edge.review``). The page
lists them; labelling one moves it to ``<state>/labelled/<label>/``, class folders that training
takes as they are (``docs/training.md``, "Retraining on your bin's own photos"); discarding one
deletes it. Plain files and folders: nothing here knows HTTP.

Usage:
    desk = LabelDesk(state_dir)
    listing = desk.listing(labels)                 # newest first, with the model's guesses
    desk.label(listing["photos"][0]["name"], "glass", labels)
"""

from __future__ import annotations

import filecmp
import os
import threading
from pathlib import Path

from edge.review import read_name

MAX_LISTED = 200  # a page of thumbnails a phone can show; the rest follow as these are labelled
# The labelled folder is on the card that also holds the counts: past this, copy it off first.
MAX_LABELLED = 5000


class LabelError(Exception):
    """A refused request, with the HTTP status that says why (404 gone, 400 bad label, 507 full)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class LabelDesk:
    """The review folder and the labelled class folders under one state folder."""

    def __init__(self, state_dir: str | os.PathLike):
        self.review = Path(state_dir) / "review"
        self.labelled = Path(state_dir) / "labelled"
        self._lock = threading.Lock()  # two operators labelling at once must not both pass the cap

    def listing(self, labels: list[str], label_map: dict[str, str] | None = None) -> dict:
        """The newest ``MAX_LISTED`` review photos, how many wait in all, and how many each label holds.

        ``label_map`` (the model's, source folder -> label) turns a guess of an earlier model that
        this one merged ("trash", now "rest") into its label here."""
        label_map = {source: target for source, target in (label_map or {}).items() if target in labels}
        photos = [info for info in (read_name(path.name, [*labels, *label_map]) for path in self._review_files())
                  if info]
        for info in photos:
            info["guess"] = label_map.get(info["guess"], info["guess"])
        photos.sort(key=lambda info: info["name"], reverse=True)
        return {"photos": photos[:MAX_LISTED], "waiting": len(photos), "labels": list(labels),
                "labelled": self._labelled_counts(), "labelled_folder": str(self.labelled)}

    def photo(self, name: str) -> Path:
        """The file of review photo ``name``; ``LabelError`` 404 for any other name."""
        path = self.review / name
        if read_name(name, ()) is None or path.is_symlink() or not path.is_file():
            raise LabelError(404, f"no review photo {name!r} (labelled, discarded or pruned meanwhile?)")
        return path

    def label(self, name: str, label: str, labels: list[str]) -> dict:
        """Moves review photo ``name`` into ``labelled/<label>/``."""
        if not isinstance(label, str) or label not in labels:
            raise LabelError(400, f"{label!r} is not one of the model's labels ({', '.join(labels)})")
        if label in (".", "..") or any(char in label for char in "/\\\0"):
            raise LabelError(400, f"{label!r} cannot be a folder name")
        source = self.photo(name)
        with self._lock:
            if sum(self._labelled_counts().values()) >= MAX_LABELLED:
                raise LabelError(507, f"{MAX_LABELLED} labelled photos wait in {self.labelled}: copy them off "
                                      f"the bin (and delete them there) before labelling more")
            target = _free_path(self.labelled / label / name, source)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(source, target)  # one file system: the photo is in one folder or the other
            except FileNotFoundError:
                raise LabelError(404, f"review photo {name!r} is gone (pruned as the folder filled?)") from None
        return {"name": name, "label": label, "saved_as": target.name, "labelled": self._labelled_counts()}

    def discard(self, name: str) -> dict:
        """Deletes review photo ``name`` (a frame no class fits)."""
        path = self.photo(name)
        with self._lock:  # not while a label moves it: one of the two answers must be "gone"
            try:
                path.unlink()
            except FileNotFoundError:
                raise LabelError(404, f"review photo {name!r} is gone (labelled or pruned meanwhile?)") from None
        return {"name": name, "discarded": True}

    def _review_files(self) -> list[Path]:
        if not self.review.is_dir():
            return []
        return [path for path in self.review.glob("*.jpg") if path.is_file() and not path.is_symlink()]

    def _labelled_counts(self) -> dict[str, int]:
        if not self.labelled.is_dir():
            return {}
        return {folder.name: sum(1 for path in folder.glob("*.jpg") if path.is_file())
                for folder in sorted(self.labelled.iterdir()) if folder.is_dir()}


def _free_path(path: Path, source: Path) -> Path:
    """``path``, or ``name-2.jpg``, ``name-3.jpg``... when another photo was labelled under that name
    before (one copied back into review/ by hand): labelling must never replace it. The same photo
    labelled into the same class again replaces its identical copy instead of training twice."""
    candidate, number = path, 1
    while candidate.is_symlink() or (candidate.exists() and not filecmp.cmp(candidate, source, shallow=False)):
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate
