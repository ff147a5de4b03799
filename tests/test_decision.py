"""decision: label -> bin, shared bins, reject below min_confidence or for unmapped labels."""

from __future__ import annotations

import pytest

from edge.classifier import Prediction
from edge.decision import Decider, Decision


def prediction(label: str, confidence: float) -> Prediction:
    return Prediction(label, confidence, {label: confidence}, [(label, confidence)], 1.0, 1.0)


@pytest.fixture
def decider() -> Decider:
    return Decider({"glass": "glass", "metal": "metal", "plastic": "metal", "trash": "reject"},
                   reject_bin="reject", min_confidence=0.6)


def test_a_confident_label_goes_to_its_bin(decider):
    assert decider.decide(prediction("glass", 0.9)) == Decision("glass", 0.9, "glass", False)


def test_several_labels_may_share_a_bin(decider):
    assert decider.decide(prediction("plastic", 0.8)).bin == "metal"
    assert decider.decide(prediction("metal", 0.8)).bin == "metal"


def test_below_min_confidence_goes_to_reject_and_is_marked_rejected(decider):
    assert decider.decide(prediction("glass", 0.59)) == Decision("glass", 0.59, "reject", True)
    assert decider.decide(prediction("glass", 0.6)).bin == "glass"


def test_a_label_without_a_bin_is_rejected(decider):
    assert decider.decide(prediction("paper", 0.99)) == Decision("paper", 0.99, "reject", True)


def test_a_label_mapped_to_the_reject_bin_is_a_confident_decision(decider):
    assert decider.decide(prediction("trash", 0.9)) == Decision("trash", 0.9, "reject", False)


def test_bin_names_lists_each_bin_once_including_reject(decider):
    assert decider.bin_names == ("glass", "metal", "reject")
    assert Decider({}, "reject", 0.5).bin_names == ("reject",)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="min_confidence"):
        Decider({}, "reject", 1.5)
    with pytest.raises(ValueError, match="reject_bin"):
        Decider({}, "", 0.5)


def test_labels_match_bins_in_unicode_nfc_whatever_form_either_was_written_in():
    composed, decomposed = "Bio-M\u00fcll", "Bio-Mu\u0308ll"  # a config typed by hand; a folder made on a Mac
    decider = Decider({composed: "bio"}, reject_bin="reject", min_confidence=0.5)
    assert decider.decide(prediction(decomposed, 0.9)) == Decision(decomposed, 0.9, "bio", False)
