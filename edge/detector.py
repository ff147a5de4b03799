"""Item detection: decide when an item is on the tray and settled, so it is classified once.

The occupancy detector compares a small grey copy of each frame with a learned empty-tray
background. When enough of the region of interest differs, the tray is occupied; once
consecutive frames stop changing, the item has settled and the last K frames are handed
back for classification. It re-arms only after the tray has been empty for a few frames,
so one item is one decision however long it stays -- or, when the scene stays changed and
still for ``relearn_after_s`` after a decision (a light switched on, the camera bumped, an item
stuck on the tray), by taking that scene as the new empty tray, so the bin never stops sorting.
Alternatives with the same ``update`` contract: ``every_frame`` (each frame is an item) and ``sensor`` (a break-beam says when).

Usage:
    trigger = make_trigger("occupancy", roi=(0.1, 0.1, 0.8, 0.8))
    for frame in frames:
        settled = trigger.update(frame)
        if settled:
            prediction = classifier.classify_frames([f.image for f in settled])
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edge import imaging

if TYPE_CHECKING:
    from edge.camera import Frame

log = logging.getLogger(__name__)

GREY_SIZE = imaging.THUMBNAIL_SIZE  # width, height of the grey image the detector compares
_GREY_SHAPE = (GREY_SIZE[1], GREY_SIZE[0])


class ItemDetector:
    """Occupancy against a learned empty-tray background.

    States: ``learning`` (averaging the first empty frames), ``empty``, ``occupied``
    (an item is there but still moving), ``decided`` (its frames were handed back).

    Usage:
        detector = ItemDetector(roi=(0.0, 0.0, 1.0, 1.0), classify_frames=3)
        settled = detector.update(frame)   # list of K frames exactly once per item, else None
    """

    def __init__(self, *, roi=(0.0, 0.0, 1.0, 1.0), diff_threshold: float = 25.0,
                 occupied_fraction: float = 0.05, still_threshold: float = 2.0, still_frames: int = 2,
                 classify_frames: int = 3, background_frames: int = 3, empty_frames_to_rearm: int = 2,
                 background_rate: float = 0.05, relearn_after_s: float | None = 5.0):
        x, y, w, h = (float(value) for value in roi)
        if not (0 <= x < 1 and 0 <= y < 1 and w > 0 and h > 0 and x + w <= 1.0001 and y + h <= 1.0001):
            raise ValueError(f"roi {tuple(roi)} must be x, y, w, h fractions inside the frame")
        if classify_frames < 1 or background_frames < 1 or empty_frames_to_rearm < 1 or still_frames < 0:
            raise ValueError("classify_frames, background_frames and empty_frames_to_rearm must be >= 1, "
                             "still_frames >= 0")
        if not 0 <= background_rate <= 1:
            raise ValueError("background_rate must be between 0 and 1")
        if relearn_after_s is not None and relearn_after_s <= 0:
            raise ValueError("relearn_after_s must be positive (or None: never)")
        width, height = GREY_SIZE
        # At least one pixel: a thin region at the far edge (x = 0.993) would round to none at all.
        left, top = min(int(round(x * width)), width - 1), min(int(round(y * height)), height - 1)
        self._window = (slice(top, max(top + 1, int(round((y + h) * height)))),
                        slice(left, max(left + 1, int(round((x + w) * width)))))
        self.diff_threshold = diff_threshold
        self.occupied_fraction = occupied_fraction
        self.still_threshold = still_threshold
        self.still_frames = still_frames
        self.classify_frames = classify_frames
        self.background_frames = background_frames
        self.empty_frames_to_rearm = empty_frames_to_rearm
        self.background_rate = background_rate
        self.relearn_after_s = relearn_after_s
        self.items = 0
        self.relearned = 0  # times a scene that stayed changed became the new empty tray
        self.changed_fraction = 0.0  # last frame's, for status pages and tuning
        self.reset()

    def reset(self) -> None:
        """Forgets the background and starts learning again."""
        self.state = "learning"
        self._learned: list[np.ndarray] = []
        self._background: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._settled: deque = deque(maxlen=self.classify_frames)
        self._still_count = 0
        self._empty_count = 0
        self._unchanged_since: float | None = None
        self._old_background: np.ndarray | None = None

    def update(self, frame: Frame) -> list[Frame] | None:
        """Feeds one frame; returns the K settled frames once per item, else None."""
        thumb = frame.thumbnail
        if thumb is None or thumb.shape != _GREY_SHAPE:
            thumb = imaging.thumbnail(frame.image)
        grey = np.asarray(thumb, np.float32)[self._window]  # float: uint8 differences would wrap
        previous, self._previous = self._previous, grey
        if self.state == "learning":
            self._learned.append(grey)
            if len(self._learned) >= self.background_frames:
                self._background = np.mean(self._learned, axis=0)
                self._learned = []
                self.state = "empty"
            return None
        self.changed_fraction = self._changed(grey, self._background)
        if self.changed_fraction < self.occupied_fraction:
            if self.state in ("occupied", "decided") and self.changed_fraction >= self.occupied_fraction / 2:
                # Hysteresis: a faint item (clear plastic) can hover around the threshold. Between half
                # of it and all of it the tray is not called empty: no re-arm, nothing learnt into the
                # background, so one item stays one decision. A residue or shadow that stays there
                # is relearnt like any other lasting change.
                self._empty_count = 0
                if self.state == "decided":
                    self._relearn_if_stuck(grey, previous, frame.ts)
                return None
            self._on_empty(grey)
            return None
        self._empty_count = 0
        if self.state == "empty" and self._back_to_old_tray(grey):
            return None
        if self.state == "decided":
            self._relearn_if_stuck(grey, previous, frame.ts)
            return None
        if self.state == "empty":
            self.state = "occupied"
            self._settled.clear()
            self._still_count = 0
        elif self._still(grey, previous):
            self._still_count += 1
        else:
            self._settled.clear()
            self._still_count = 0
        self._settled.append(frame)
        if self._still_count >= self.still_frames and len(self._settled) >= self.classify_frames:
            self.state = "decided"
            self._unchanged_since = None
            self.items += 1
            settled = list(self._settled)
            self._settled.clear()
            return settled
        return None

    def _relearn_if_stuck(self, grey: np.ndarray, previous: np.ndarray | None, ts: float) -> None:
        """After a decision, a scene that stays changed and still for relearn_after_s is the new empty tray."""
        if self.relearn_after_s is None:
            return
        # A clock stepped back (NTP on a Pi without a real-time clock) restarts the wait.
        if previous is None or not self._still(grey, previous) or self._unchanged_since is None or ts < self._unchanged_since:
            self._unchanged_since = ts
            return
        if ts - self._unchanged_since >= self.relearn_after_s:
            self._old_background = self._background  # an item stuck there: its removal must not count
            self._background = grey.copy()
            self.state = "empty"
            self._unchanged_since = None
            self.relearned += 1
            log.warning("detector: the tray stayed changed and still for %g s after an item; taking it as the "
                        "new empty tray (light change, camera moved, or an item stuck on the tray?)",
                        self.relearn_after_s)

    def _back_to_old_tray(self, grey: np.ndarray) -> bool:
        """After a relearn: a frame that matches the tray from before is that tray again, not an item.

        When a stuck item was relearnt as background, taking it away changes the scene again;
        without this, the empty tray would be classified as an item.
        """
        if self._old_background is None:
            return False
        fraction = self._changed(grey, self._old_background)
        if fraction >= self.occupied_fraction / 2:
            return False
        self._background, self._old_background = self._old_background, None
        self.changed_fraction = fraction
        return True

    def _changed(self, grey: np.ndarray, background: np.ndarray) -> float:
        """Share of pixels that differ from ``background`` by more than ``diff_threshold``."""
        # count_nonzero and sum, not np.mean: a third of the cost on arrays this small (every frame counts).
        return np.count_nonzero(np.abs(grey - background) > self.diff_threshold) / grey.size

    def _still(self, grey: np.ndarray, previous: np.ndarray) -> bool:
        """The mean frame-to-frame difference is within ``still_threshold``."""
        return float(np.abs(grey - previous).sum()) / grey.size <= self.still_threshold

    def _on_empty(self, grey: np.ndarray) -> None:
        # Follow slow light changes, but only with frames that show the empty tray.
        self._background += self.background_rate * (grey - self._background)
        self._settled.clear()
        self._still_count = 0
        if self.state in ("occupied", "decided"):
            self._empty_count += 1
            if self._empty_count >= self.empty_frames_to_rearm:
                self.state = "empty"
                self._empty_count = 0


class EveryFrameTrigger:
    """Every frame is an item (for a conveyor camera or for benchmarking the classifier).

    Usage:
        settled = EveryFrameTrigger().update(frame)   # always [frame]
    """

    def __init__(self):
        self.state = "decided"
        self.items = 0

    def update(self, frame: Frame) -> list[Frame] | None:
        self.items += 1
        return [frame]


class SensorTrigger:
    """A break-beam sensor or button says an item arrived; classify the next frames.

    The break starts the item: after ``settle_frames`` the next ``classify_frames`` frames are taken
    even if the beam is clear again by then (a press of a button, a small item falling through).

    Args:
        is_active: returns True while the beam is broken (``gpio.BeamSensor.is_active``).
        classify_frames: frames handed back per item.
        settle_frames: frames skipped after the beam breaks, while the item drops into place.
        clear_s: how long the beam must stay clear (by the frames' times) before the next break is a
            new item: an item that bounces through the beam is one item, not two.

    Usage:
        trigger = SensorTrigger(is_active=sensor.is_active, settle_frames=2)
    """

    def __init__(self, *, is_active: Callable[[], bool], classify_frames: int = 1, settle_frames: int = 0,
                 clear_s: float = 0.0):
        if classify_frames < 1 or settle_frames < 0 or clear_s < 0:
            raise ValueError("classify_frames must be >= 1, settle_frames and clear_s >= 0")
        self.is_active = is_active
        self.classify_frames = classify_frames
        self.settle_frames = settle_frames
        self.clear_s = clear_s
        self.state = "empty"
        self.items = 0
        self._collected: list[Frame] = []
        self._to_skip = 0
        self._clear_since: float | None = None

    def update(self, frame: Frame) -> list[Frame] | None:
        if self.is_active():
            self._clear_since = None
            if self.state == "empty":  # a break: an item arrived
                self.state = "occupied"
                self._to_skip = self.settle_frames
                self._collected = []
        else:
            if self._clear_since is None or frame.ts < self._clear_since:  # or the clock stepped back
                self._clear_since = frame.ts
            if self.state == "decided" and frame.ts - self._clear_since >= self.clear_s:
                self.state = "empty"  # clear long enough: the next break is a new item, not a bounce
            if self.state != "occupied":
                return None
        if self.state == "decided":
            return None
        # Collected whether or not the beam is still broken: a button press or an item falling through
        # the beam ends long before the K frames are taken, and it is an item all the same.
        if self._to_skip:
            self._to_skip -= 1
            return None
        self._collected.append(frame)
        if len(self._collected) < self.classify_frames:
            return None
        self.state = "decided"
        self.items += 1
        settled, self._collected = self._collected, []
        return settled


class ReplayedBeam:
    """A dry run of the ``sensor`` trigger: the simulated beam is broken while a replayed photo lies
    on the simulated tray (frames with a ``source_id``) and whole again on the empty tray, as an item
    breaks a real beam. Wraps the trigger (whose ``clear_s`` debounce it turns off: a simulated beam
    never bounces); used with the mock pin factory and a replay only.

    Usage:
        trigger = ReplayedBeam(make_trigger("sensor", is_active=sensor.is_active), sensor.simulate)
    """

    def __init__(self, trigger, simulate: Callable[[bool], None]):
        self.trigger = trigger
        self.simulate = simulate
        # A simulated beam never bounces, and a replay at --replay-fps 0 shows the empty tray for
        # microseconds: the debounce would merge every photo into the first item.
        trigger.clear_s = 0.0

    def update(self, frame: Frame) -> list[Frame] | None:
        self.simulate(frame.source_id is not None)
        return self.trigger.update(frame)


TRIGGERS = {"occupancy": ItemDetector, "every_frame": EveryFrameTrigger, "sensor": SensorTrigger}


def make_trigger(kind: str, **options):
    """Builds an item trigger by kind: ``occupancy``, ``every_frame`` or ``sensor``.

    Raises:
        ValueError: unknown kind or options it does not take.
    """
    if kind not in TRIGGERS:
        raise ValueError(f"unknown detector {kind!r} (choose one of {', '.join(TRIGGERS)})")
    try:
        return TRIGGERS[kind](**options)
    except TypeError as err:
        raise ValueError(f"detector {kind!r}: {err}") from None
