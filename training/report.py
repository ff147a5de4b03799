"""Run outputs people read: metrics.json, history.csv, confusion_matrix.png, curves.png, report.md.

Usage:
    write_outputs(run_dir, metrics, history_rows, labels, summary_lines)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # runs on headless workstations and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


def write_history(rows: list[dict], path: Path) -> None:
    keys = sorted({k for row in rows for k in row}, key=lambda k: (k not in ("phase", "epoch"), k))
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def plot_confusion(matrix, labels, path: Path, title: str = "Confusion matrix (test)") -> None:
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.1 * len(labels) + 2, 1.1 * len(labels) + 1.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > threshold else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(rows: list[dict], path: Path, val_seen: bool = False) -> None:
    """Training loss and val scores per epoch; ``val_seen``: a final fit, which trained on the val photos."""
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(11, 4))
    steps = range(1, len(rows) + 1)
    val = "val (seen in training)" if val_seen else "val"
    loss_ax.plot(steps, [r.get("loss", np.nan) for r in rows], label="train loss")
    score_ax.plot(steps, [r.get("val_macro_f1", np.nan) for r in rows], label=f"{val} macro-F1")
    score_ax.plot(steps, [r.get("val_acc", np.nan) for r in rows], label=f"{val} accuracy")
    boundary = next((i for i, r in enumerate(rows) if r.get("phase") == "finetune"), None)
    for ax in (loss_ax, score_ax):
        if boundary:
            ax.axvline(boundary + 0.5, color="grey", linestyle="--", label="fine-tuning starts")
        ax.set_xlabel("epoch (head, then fine-tuning)" if boundary else "epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole: no 1.2, 1.4 ticks
        ax.legend()
        ax.grid(alpha=0.3)
    loss_ax.set_title("training loss")
    score_ax.set_title("validation photos, seen in training (a final fit)" if val_seen else "validation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report_markdown(metrics: dict, title: str, notes: list[str], prefix: str = "") -> str:
    lines = [f"# {title}", ""] + notes + ["",
             "| metric | value |", "|---|---|"]
    for key in ("accuracy", "macro_f1", "micro_f1", "macro_precision", "macro_recall", "top2_accuracy", "n"):
        if key not in metrics:  # top-2 of a two-class model
            continue
        value = metrics[key]
        lines.append(f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for label, row in metrics["per_class"].items():
        lines.append(f"| {label} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    if metrics.get("macro_excluded"):
        lines += ["", f"Macro figures leave out {', '.join(metrics['macro_excluded'])}: no photo of it, "
                      "and never predicted."]
    lines += ["", f"Confusion matrix (rows true, columns predicted): `{prefix}confusion_matrix.png`."]
    if not prefix:  # a re-evaluation has no training of its own
        lines[-1] += " Training curves: `curves.png`; per-epoch figures: `history.csv`."
    return "\n".join(lines + [""])


def write_evaluation(run_dir: Path, metrics: dict, title: str, notes: list[str], prefix: str = "",
                     split_name: str = "test") -> None:
    """Writes ``{prefix}metrics.json``, ``{prefix}confusion_matrix.png`` and ``{prefix}report.md``."""
    (run_dir / f"{prefix}metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion(metrics["confusion_matrix"], metrics["labels"], run_dir / f"{prefix}confusion_matrix.png",
                   title=f"Confusion matrix ({split_name})")
    (run_dir / f"{prefix}report.md").write_text(report_markdown(metrics, title, notes, prefix), encoding="utf-8")
