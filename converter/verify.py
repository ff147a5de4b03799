"""The verification gate: the converted model against the float model.

The gate decides on the run's val split (every choice is made on val); the same comparison
on the test split is what the manifest reports.

Usage:
    from converter.verify import compare, check_gate
    gate = compare(targets, float_probabilities, model_probabilities, run.labels, split="val")
    check_gate(gate, max_drop=1.0, significance=0.05)   # raises GateError on a real loss
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from converter import GateError


def classification_metrics(targets: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class F1.

    A class with no photo and no prediction gets per-class F1 0 but is left out of the macro
    average, as in ``training.metrics`` (so a run's and its bundle's macro-F1 mean the same).
    """
    targets = np.asarray(targets, np.int64)
    predicted = np.asarray(predicted, np.int64)
    per_class, occurring = {}, []
    for index, label in enumerate(labels):
        true_positive = int(np.sum((predicted == index) & (targets == index)))
        predicted_count = int(np.sum(predicted == index))
        actual_count = int(np.sum(targets == index))
        denominator = predicted_count + actual_count
        per_class[label] = round(2 * true_positive / denominator, 6) if denominator else 0.0
        if denominator:
            occurring.append(per_class[label])
    accuracy = float(np.mean(predicted == targets)) if len(targets) else 0.0
    return {
        "accuracy": round(accuracy, 6),
        "macro_f1": round(float(np.mean(occurring)), 6) if occurring else 0.0,
        "per_class_f1": per_class,
    }


def compare(targets: np.ndarray, float_probabilities: np.ndarray, model_probabilities: np.ndarray,
            labels: tuple[str, ...], split: str = "test") -> dict[str, Any]:
    """The manifest's ``metrics``: both models' figures, top-1 agreement, the accuracy drop in points,
    and the photos behind the drop (``flips``), so a reader can tell a real loss from noise.
    """
    float_top1 = np.argmax(float_probabilities, axis=1)
    model_top1 = np.argmax(model_probabilities, axis=1)
    float_metrics = classification_metrics(targets, float_top1, labels)
    model_metrics = classification_metrics(targets, model_top1, labels)
    agreement = float(np.mean(float_top1 == model_top1)) if len(targets) else 0.0
    return {
        "split": split,
        "n": int(len(targets)),
        "float": float_metrics,
        "model": model_metrics,
        "agreement": round(agreement, 6),
        "drop_points": round(100 * (float_metrics["accuracy"] - model_metrics["accuracy"]), 4),
        "flips": flips(targets, float_top1, model_top1),
    }


def flips(targets: np.ndarray, float_top1: np.ndarray, model_top1: np.ndarray) -> dict[str, Any]:
    """Photos one model gets right and the other wrong, with McNemar's exact two-sided p-value.

    The drop in points is the net of two counts: ``broken`` (float right, converted wrong) and
    ``fixed`` (the reverse). With a handful of such photos the drop is within the noise of the
    test split; the p-value (exact binomial test on the ``broken + fixed`` discordant photos)
    says how likely a split at least this uneven would be if quantisation changed nothing.
    """
    targets = np.asarray(targets)
    float_right = np.asarray(float_top1) == targets
    model_right = np.asarray(model_top1) == targets
    broken = int(np.sum(float_right & ~model_right))
    fixed = int(np.sum(~float_right & model_right))
    return {"broken": broken, "fixed": fixed, "mcnemar_p": round(mcnemar_exact_p(broken, fixed), 4)}


def mcnemar_exact_p(broken: int, fixed: int) -> float:
    """McNemar's exact test: two-sided binomial p-value of ``broken`` vs ``fixed`` under p = 1/2."""
    discordant = broken + fixed
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(broken, fixed) + 1)) / 2 ** discordant
    return min(1.0, 2 * tail)


def check_gate(metrics: dict[str, Any], max_drop: float, significance: float = 0.05) -> None:
    """Raises ``GateError`` when the converted model lost accuracy beyond the noise of the split.

    Two rules, either of which refuses: the drop exceeds ``max_drop`` points (a loss too large to
    ship, however it came about), or the converted model loses more photos than it gains and
    McNemar's exact two-sided p-value puts that imbalance below ``significance`` (a loss too
    one-sided to be chance: on a large val split a systematic 0.3-point loss is caught). Only
    losses refuse, so the chance of refusing a conversion that changed nothing is about
    ``significance / 2``. A drop of a few photos made of close calls going both ways passes. On
    TrashNet's 378 val photos the first rule is the stricter one: the fewest one-sided flips with
    p < 0.05 (6 lost, 0 gained) already drop 1.6 points.
    """
    if not 0 <= significance <= 1:  # also NaN, which would silently turn the rule off
        raise ValueError(f"significance must be between 0 and 1, not {significance!r}")
    drop = metrics["drop_points"]
    figures = metrics.get("flips") or {}
    broken, fixed = figures.get("broken", 0), figures.get("fixed", 0)
    # The exact p-value, not the rounded one in the figures (0.04998 must not pass as 0.05).
    one_sided = broken > fixed and mcnemar_exact_p(broken, fixed) < significance
    if drop > max_drop or one_sided:
        reason = (f"allowed: {max_drop:g}" if drop > max_drop else
                  f"a one-sided loss: McNemar p below {significance:g}")
        raise GateError(
            f"accuracy gate failed: the converted model scores {metrics['model']['accuracy']:.4f} "
            f"against the float model's {metrics['float']['accuracy']:.4f} on {metrics['n']} "
            f"{metrics['split']} photos, a drop of {drop:.2f} points ({reason})"
            f"{_flips_text(metrics.get('flips'))}; no bundle written"
        )


def gate_line(metrics: dict[str, Any]) -> str:
    """One line: the split, both accuracies and the drop with the photos behind it."""
    return (f"{metrics['split']} split, {metrics['n']} photos: float {metrics['float']['accuracy']:.4f}, "
            f"converted {metrics['model']['accuracy']:.4f}, drop {metrics['drop_points']:.2f} points"
            f"{_flips_text(metrics.get('flips'))}")


def summary(metrics: dict[str, Any]) -> str:
    """A few human lines for the terminal."""
    f, m = metrics["float"], metrics["model"]
    return (
        f"{metrics['split']} split, {metrics['n']} photos\n"
        f"  float model:     accuracy {f['accuracy']:.4f}  macro-F1 {f['macro_f1']:.4f}\n"
        f"  converted model: accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}\n"
        f"  top-1 agreement {metrics['agreement']:.4f}, drop {metrics['drop_points']:.2f} points"
        f"{_flips_text(metrics.get('flips'))}"
    ) + _views_line(metrics.get("views")) + _gate_summary(metrics.get("gate")) + _preprocessing_line(
        metrics.get("preprocessing"))


def _views_line(views: dict[str, Any] | None) -> str:
    if not views:  # manifests written before session 11
        return ""
    f, m = views["float"], views["model"]
    return (f"\n  as the bin classifies ({', '.join(views['views'])} averaged): float accuracy {f['accuracy']:.4f} "
            f"macro-F1 {f['macro_f1']:.4f}, converted accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}")


def _gate_summary(gate: dict[str, Any] | None) -> str:
    if not gate:
        return ""
    # Manifests from before session 8 were held to the drop limit alone.
    if "significance" not in gate:
        significance = ""
    elif gate["significance"] > 0:
        significance = f"; one-sided flips refused below McNemar p {gate['significance']:g}"
    else:
        significance = "; the one-sided rule off (--significance 0)"
    return (f"\n  gate on the {gate['split']} split ({gate['n']} photos): drop {gate['drop_points']:.2f} points, "
            f"allowed {gate['max_drop']:g}{significance}")


def _flips_text(figures: dict[str, Any] | None) -> str:
    if not figures:  # manifests written before flips were recorded
        return ""
    return (f" ({figures['broken']} photos lost, {figures['fixed']} gained; "
            f"McNemar p = {figures['mcnemar_p']:.2f})")


def _preprocessing_line(figures: dict[str, Any] | None) -> str:
    if not figures:
        return ""
    return (f"\n  training vs bin preprocessing: {figures['pixel_mean_abs_diff']:.2f} grey levels apart, "
            f"float top-1 agreement {figures['float_top1_agreement']:.4f}")
