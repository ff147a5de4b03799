"""Decision: which bin an item goes to, given the classifier's prediction.

Plain data, no outside libraries. Several labels may share a bin; a label with no
bin, or a prediction below ``min_confidence``, goes to the reject bin.

Usage:
    decider = Decider({"glass": "glass", "metal": "metal", "plastic": "metal"}, reject_bin="reject",
                      min_confidence=0.6)
    decision = decider.decide(prediction)
    flap.move_to(decision.bin)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge.bundle import normal_label

if TYPE_CHECKING:
    from edge.classifier import Prediction


@dataclass(frozen=True)
class Decision:
    """Where one item goes.

    ``rejected`` is true when the item went to the reject bin because the prediction was
    unsure or its label has no bin (these frames are worth reviewing); a label mapped to
    the reject bin on purpose is a confident decision, not a rejection.
    """

    label: str
    confidence: float
    bin: str
    rejected: bool


class Decider:
    """Maps a prediction to a bin.

    Usage:
        decision = Decider(bins, reject_bin="reject", min_confidence=0.6).decide(prediction)
    """

    def __init__(self, bins: dict[str, str], reject_bin: str, min_confidence: float):
        if not reject_bin:
            raise ValueError("reject_bin must be a bin name")
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be between 0 and 1, got {min_confidence}")
        self.bins = dict(bins)
        self._bin_of = {normal_label(label): target for label, target in self.bins.items()}
        self.reject_bin = reject_bin
        self.min_confidence = float(min_confidence)
        # dict.fromkeys keeps first-seen order and drops repeats
        self.bin_names: tuple[str, ...] = tuple(dict.fromkeys([*self.bins.values(), reject_bin]))

    def decide(self, prediction: Prediction) -> Decision:
        """Returns the bin for ``prediction``: its label's bin, or the reject bin."""
        target = self._bin_of.get(normal_label(prediction.label))
        if target is None or prediction.confidence < self.min_confidence:
            return Decision(prediction.label, prediction.confidence, self.reject_bin, True)
        return Decision(prediction.label, prediction.confidence, target, False)
