"""One view against several: a bundle's accuracy on the split's photos, as the bin classifies them.

Each photo is decoded with ``edge.imaging.read_image``, resized once and shown to
``edge.classifier.Classifier`` as is and as every view of ``--views`` (one invoke per view); the
one-view figure is the photo as is, the other the probabilities of ``--views`` averaged: what the
bin does with an item's K still frames. Prints a markdown table per split with
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
    from training.metrics import classification_metrics

    split = json.loads(split_file.read_text(encoding="utf-8"))
    lists = split.get("splits", split)
    views = imaging.parse_views(args.views)
    classifier = Classifier.from_path(args.model, threads=args.threads)
    labels = list(classifier.labels)
    shown = ["original"] + [name for name in views if name != "original"]  # each view invoked once per photo
    print(f"# {args.model.name} (sha256 {classifier.bundle.manifest.sha256[:12]}…), {cpu_model()} "
          f"({os.cpu_count()} cores), {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")
    for name in args.splits.split(","):
        targets, single, averaged = [], [], []
        for relative in lists[name]:
            rgb = imaging.resize_for_model(imaging.read_image(args.data / relative), classifier.bundle.manifest.input)
            probabilities = {view: classifier.probabilities(rgb, view) for view in shown}
            targets.append(labels.index(Path(relative).parts[0]))
            single.append(probabilities["original"])
            averaged.append(np.mean([probabilities[view] for view in views], axis=0))
        one, several = (classification_metrics(targets, np.array(rows), labels) for rows in (single, averaged))
        right_one = np.argmax(single, axis=1) == np.array(targets)
        right_several = np.argmax(averaged, axis=1) == np.array(targets)
        gained, lost = int(np.sum(right_several & ~right_one)), int(np.sum(right_one & ~right_several))
        print(f"\n{name}, {len(targets)} photos\n\n| views | accuracy | macro-F1 | against one view |\n|---|---|---|---|")
        print(f"| original | {one['accuracy']:.4f} | {one['macro_f1']:.4f} | |")
        print(f"| {', '.join(views)} | {several['accuracy']:.4f} | {several['macro_f1']:.4f} | "
              f"{gained} gained, {lost} lost |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
