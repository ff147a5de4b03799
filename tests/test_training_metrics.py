"""Evaluation figures against a hand-computed confusion matrix."""

import numpy as np
import pytest

from training.metrics import classification_metrics, confusion_matrix, summarize_runs


def test_metrics_match_a_hand_computed_confusion_matrix():
    # true:      a a a b b c
    # predicted: a a b b c c
    y_true = [0, 0, 0, 1, 1, 2]
    probs = np.eye(3)[[0, 0, 1, 1, 2, 2]]
    report = classification_metrics(y_true, probs, ["a", "b", "c"])
    assert report["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report["accuracy"] == pytest.approx(4 / 6)
    # a: p 1, r 2/3, f1 0.8; b: p 1/2, r 1/2, f1 1/2; c: p 1/2, r 1, f1 2/3
    assert report["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                        "f1": pytest.approx(0.8), "support": 3}
    assert report["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert report["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert report["micro_f1"] == report["accuracy"]


def test_class_never_predicted_has_zero_precision_not_nan():
    report = classification_metrics([0, 1], np.eye(2)[[0, 0]], ["a", "b"])
    assert report["per_class"]["b"]["precision"] == 0.0 and report["per_class"]["b"]["f1"] == 0.0


def test_macro_figures_leave_out_classes_that_never_occur():
    # A folder with photos of a and b only, all right: c is neither true nor predicted.
    report = classification_metrics([0, 0, 1], np.eye(3)[[0, 0, 1]], ["a", "b", "c"])
    assert report["macro_f1"] == 1.0 and report["macro_excluded"] == ["c"]
    # A class that is predicted but never true still counts (its F1 is 0).
    report = classification_metrics([0, 1], np.eye(3)[[0, 2]], ["a", "b", "c"])
    assert report["macro_f1"] == pytest.approx((1 + 0 + 0) / 3) and report["macro_excluded"] == []


def test_top_k_accuracy():
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7]])
    report = classification_metrics([1, 0], probs, ["a", "b", "c"])
    assert report["accuracy"] == 0 and report["top2_accuracy"] == 0.5
    assert "top3_accuracy" not in report  # of three classes: 1.0 whatever the model does
    four = classification_metrics([1, 0], np.hstack([probs, np.zeros((2, 1))]), ["a", "b", "c", "d"])
    assert four["top3_accuracy"] == 1.0


def test_confusion_matrix_rows_are_true_classes():
    assert confusion_matrix([0, 1], [1, 1], 2).tolist() == [[0, 1], [0, 1]]


def test_seed_summary_has_mean_and_sample_std():
    runs = [classification_metrics([0, 1], np.eye(2)[[0, 1]], ["a", "b"]),
            classification_metrics([0, 1], np.eye(2)[[0, 0]], ["a", "b"])]
    summary = summarize_runs(runs)
    assert summary["accuracy"] == pytest.approx({"mean": 0.75, "std": 0.5 ** 0.5 * 0.5})  # n - 1 in the divisor
    assert "f1_a" in summary
    assert summarize_runs(runs[:1])["accuracy"] == {"mean": 1.0, "std": None}  # one run has no spread, not 0
