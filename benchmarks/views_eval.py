"""One view against several: a bundle's accuracy on the split's photos, as the bin classifies them.

Each photo is decoded with ``edge.imaging.read_image`` and classified by ``edge.classifier.Classifier``
once with ``views=["original"]`` and once with ``--views`` (every view of the photo, probabilities
averaged: what the bin does with an item's K still frames). Prints a markdown table per split with
accuracy, macro-F1 and the photos gained and lost against the single view. Choose views on
``val``; look at ``test`` once, after the choice (benchmarks/views.md).

Usage:
    python benchmarks/views_eval.py --model models/trashnet-efficientnet-lite0-int8 \
        --data ../shared/data/trashnet --splits val
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine import cpu_model  # noqa: E402  (benchmarks run as scripts from this folder)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "trashnet"


def macro_f1(targets: np.ndarray, predicted: np.ndarray, classes: int) -> float:
    scores = []
    for label in range(classes):
        true_positive = int(np.sum((targets == label) & (predicted == label)))
        wrong = int(np.sum((targets == label) != (predicted == label)))
        scores.append(2 * true_positive / (2 * true_positive + wrong) if true_positive else 0.0)
    return float(np.mean(scores))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8")
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("SMARTBIN_DATA", DEFAULT_DATA)),
                        help="class-folder dataset (default: $SMARTBIN_DATA, else ../shared/data/trashnet)")
    parser.add_argument("--split-file", type=Path, help="JSON split (default: trashnet-split.json beside --data)")
    parser.add_argument("--splits", default="val", help="lists of the split file to score (default: val)")
    parser.add_argument("--views", default="original,mirrored,flipped")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    split_file = args.split_file or args.data.parent / "trashnet-split.json"
    if not args.data.is_dir() or not split_file.is_file():
        print(f"skipped: no data at {args.data} or no split file {split_file}", file=sys.stderr)
        return 0

    from edge import imaging
    from edge.classifier import Classifier

    split = json.loads(split_file.read_text(encoding="utf-8"))
    lists = split.get("splits", split)
    one = Classifier.from_path(args.model, threads=args.threads)
    several = Classifier.from_path(args.model, threads=args.threads, views=imaging.parse_views(args.views))
    labels = list(one.labels)
    print(f"# {args.model.name} (sha256 {one.bundle.manifest.sha256[:12]}…), {cpu_model()} "
          f"({os.cpu_count()} cores), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    for name in args.splits.split(","):
        targets, single, averaged = [], [], []
        for relative in lists[name]:
            rgb = imaging.read_image(args.data / relative)
            targets.append(labels.index(Path(relative).parts[0]))
            single.append(labels.index(one.classify(rgb).label))
            averaged.append(labels.index(several.classify(rgb).label))
        targets, single, averaged = map(np.array, (targets, single, averaged))
        gained = int(np.sum((averaged == targets) & (single != targets)))
        lost = int(np.sum((single == targets) & (averaged != targets)))
        print(f"\n{name}, {len(targets)} photos\n\n| views | accuracy | macro-F1 | against one view |\n|---|---|---|---|")
        print(f"| original | {np.mean(single == targets):.4f} | {macro_f1(targets, single, len(labels)):.4f} | |")
        print(f"| {', '.join(several.views)} | {np.mean(averaged == targets):.4f} | "
              f"{macro_f1(targets, averaged, len(labels)):.4f} | {gained} gained, {lost} lost |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
