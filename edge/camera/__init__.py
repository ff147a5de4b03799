"""Frame sources behind one interface, one backend per file, chosen by name.

Backends are imported only when asked for, so a laptop never imports picamera2 and
``import edge.camera`` stays cheap.

Usage:
    from edge.camera import open_source
    source = open_source("replay", path="photos/", fps=0)
    while (frame := source.read(timeout=5)) is not None:
        ...
    source.close()
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from edge.errors import CameraError

log = logging.getLogger(__name__)

BACKENDS = {
    "replay": ("edge.camera.replay", "ReplaySource"),
    "opencv": ("edge.camera.opencv", "OpenCVSource"),
    "picamera2": ("edge.camera.picamera", "PiCameraSource"),
    "fake": ("edge.camera.fake", "FakeSource"),
}
KINDS = (*BACKENDS, "auto")


@dataclass(frozen=True)
class Frame:
    """One camera frame.

    ``thumbnail`` is the item detector's small grey copy (``edge.imaging.thumbnail``) when
    the source made it off the sorting loop, on its capture or decoder thread, as a camera's
    low-resolution stream would; otherwise the detector makes it. ``truth`` and ``source_id``
    are set by replay only: the class subfolder and the path (relative to the replay root)
    of the photo on the simulated tray. ``model_input`` is the frame already stretched to the
    classifier's input size (``edge.imaging.resize_for_model``), made off the sorting loop like
    ``thumbnail`` when the source was told that size; the classifier then only copies it.
    """

    image: np.ndarray
    ts: float
    index: int
    truth: str | None = None
    source_id: str | None = None
    thumbnail: np.ndarray | None = None
    model_input: np.ndarray | None = None


@runtime_checkable
class FrameSource(Protocol):
    """What every camera backend provides.

    Usage:
        source: FrameSource = open_source("replay", path="photos/")
    """

    def read(self, timeout: float | None = None) -> Frame | None:
        """Blocks up to ``timeout`` for the next frame; None at the end of the stream.

        Raises:
            CameraError: the camera is dead after its retries, or no frame came in time.
        """

    def close(self) -> None:
        """Releases the camera; safe to call twice."""

    @property
    def stats(self) -> dict[str, int]:
        """Counters such as ``frames``, ``unreadable``, ``retries``, ``dropped``."""


def open_source(kind: str, **options) -> FrameSource:
    """Opens a frame source by kind: ``replay``, ``opencv``, ``picamera2``, ``fake`` or ``auto``.

    ``auto`` tries picamera2, then OpenCV device 0.

    Raises:
        CameraError: unknown kind, bad options, or no camera could be opened.
    """
    if kind == "auto":
        return _open_auto(**options)
    if kind not in BACKENDS:
        raise CameraError(f"unknown camera kind {kind!r} (choose one of {', '.join(KINDS)})")
    module_name, class_name = BACKENDS[kind]
    backend = getattr(importlib.import_module(module_name), class_name)
    try:
        return backend(**options)
    except TypeError as err:
        raise CameraError(f"camera {kind!r}: {err}") from None


def _open_auto(width: int | None = None, height: int | None = None, fps: float | None = None,
               **probe_options) -> FrameSource:
    size = {key: value for key, value in (("width", width), ("height", height), ("fps", fps))
            if value is not None}
    problems = []
    for kind, options in (("picamera2", size), ("opencv", {"device": 0, "retries": 1, **size, **probe_options})):
        try:
            source = open_source(kind, **options)
        except CameraError as err:
            problems.append(str(err))
            continue
        if problems:  # the Pi camera failed: its reason matters when the fallback gives no usable frames
            log.warning("camera auto: %s; using %s instead", problems[0], kind)
        else:
            log.info("camera auto: using %s", kind)
        return source
    raise CameraError("no camera found (" + "; ".join(problems) + "); "
                      "to run without a camera, replay a folder of photos with --replay DIR")
