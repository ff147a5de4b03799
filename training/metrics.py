"""Classification metrics from true and predicted labels, in plain numpy (hand-checkable).

Usage:
    report = classification_metrics(y_true, probabilities, labels)
    report["accuracy"], report["macro_f1"], report["per_class"]["glass"]["f1"]
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def _ratio(numerator, denominator):
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def metrics_from_confusion(matrix: np.ndarray, labels) -> dict:
    """Accuracy, macro and micro precision/recall/F1 and per-class figures from a confusion matrix.

    Macro figures average over the classes that occur, as truth or as prediction (as
    scikit-learn does without ``labels=``): a class absent from the photos and never predicted
    has no F1, and counting it as 0 would cap an evaluation on a folder with 4 of 6 classes at
    0.67. Classes left out are listed in ``macro_excluded``.
    """
    matrix = np.asarray(matrix, np.float64)
    true_pos = np.diag(matrix)
    predicted = matrix.sum(axis=0)
    support = matrix.sum(axis=1)
    precision = _ratio(true_pos, predicted)
    recall = _ratio(true_pos, support)
    f1 = _ratio(2 * precision * recall, precision + recall)
    total = matrix.sum()
    micro = float(true_pos.sum() / total) if total else 0.0
    occurs = (support + predicted) > 0
    if not occurs.any():
        occurs[:] = True
    return {
        "accuracy": micro,
        "macro_precision": float(precision[occurs].mean()),
        "macro_recall": float(recall[occurs].mean()),
        "macro_f1": float(f1[occurs].mean()),
        "macro_excluded": [label for label, present in zip(labels, occurs) if not present],
        # single-label classification: micro precision = micro recall = micro F1 = accuracy
        "micro_precision": micro, "micro_recall": micro, "micro_f1": micro,
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": matrix.astype(int).tolist(),
    }


def top_k_accuracy(y_true, probabilities, k: int) -> float:
    probabilities = np.asarray(probabilities)
    k = min(k, probabilities.shape[1])
    top = np.argsort(-probabilities, axis=1)[:, :k]
    return float(np.mean([t in row for t, row in zip(np.asarray(y_true), top)]))


def classification_metrics(y_true, probabilities, labels) -> dict:
    """All evaluation figures for one split; ``labels`` fixes the class order."""
    probabilities = np.asarray(probabilities)
    y_pred = probabilities.argmax(axis=1)
    report = metrics_from_confusion(confusion_matrix(y_true, y_pred, len(labels)), labels)
    for k in (2, 3):
        if k < len(labels):  # top-k of k classes is 1.0 whatever the model does
            report[f"top{k}_accuracy"] = top_k_accuracy(y_true, probabilities, k)
    report["n"] = int(len(y_pred))
    report["labels"] = list(labels)
    return report


def summarize_runs(reports: list[dict]) -> dict:
    """Mean and sample standard deviation (n - 1; None for one run, which has no spread to estimate)
    of every scalar metric over seeded runs.

    The sample deviation, not the population one: a few seeds estimate the spread of all seeds, and
    with two or three runs the population figure would understate it by 20-30 %.
    """
    def spread(values: list[float]) -> dict[str, float | None]:
        return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None}

    keys = [k for k, v in reports[0].items() if isinstance(v, float)]
    summary = {k: spread([r[k] for r in reports]) for k in keys}
    for label in reports[0]["per_class"]:
        summary[f"f1_{label}"] = spread([r["per_class"][label]["f1"] for r in reports])
    return summary
