"""Draws benchmarks/figures/ablation.png from benchmarks/ablation.csv (one row per step of training.md's
ablation chain: the newest measurement of each step, with the code it ran at).

Each row is one training run on the official TrashNet split; val chose its epoch, test was read once.
The figures are copied from the runs' metrics.json into the CSV by hand when a run is recorded in
benchmarks/training.md; this script only draws them.

Usage:
    python benchmarks/plot_ablation.py            # needs matplotlib (the [train] extra)
"""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGETS = {"test accuracy": 0.95, "test macro-F1": 0.94}  # issue 2's targets


def main() -> None:
    rows = list(csv.DictReader((HERE / "ablation.csv").open()))
    names = [f"{row['variant']}\n({row['code']})" for row in rows]
    positions = range(len(rows))
    fig, ax = plt.subplots(figsize=(12, 5.5))
    for key, label, style in (("val_macro_f1", "val macro-F1 (chooses)", "o--"),
                              ("test_accuracy", "test accuracy", "s-"), ("test_macro_f1", "test macro-F1", "^-")):
        # A final fit has no val score (it trained on val): a gap in that line, not a crash.
        ax.plot(positions, [float(row[key]) if row[key] else float("nan") for row in rows], style, label=label)
    for (label, value), colour in zip(TARGETS.items(), ("tab:orange", "tab:green")):
        ax.axhline(value, color=colour, linewidth=0.8, linestyle=":", label=f"target {label} {value}")
    ax.set_xticks(list(positions), names, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("score (official split)")
    ax.set_title("EfficientNet-Lite0 on TrashNet: each technique added in turn (float Keras model)\n"
                 "each step measured at the code named under it; one test photo is 0.26 points", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = HERE / "figures" / "ablation.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
