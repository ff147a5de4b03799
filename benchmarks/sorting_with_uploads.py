"""The sorting loop's classify time while web uploads share its interpreter: loop first vs equal turns.

One ``Classifier`` (the shipped bundle, its ``model.views``, 2 threads) serves two kinds of callers in
this process, as in ``smartbin run`` with ``web.enabled``: a sorting loop that classifies an item's K = 3
frames every ``--period`` seconds, and ``--uploaders`` threads that decode a JPEG and classify it
over and over, two at a time like the web server's decode slots. Three modes, in alternating rounds
so that all see the same machine load:

- ``no uploads``: the loop alone;
- ``equal turns``: uploads classify as foreground callers (what every caller was before the
  priority lock: the interpreter went to whichever thread took it next);
- ``loop first``: uploads classify with ``background=True`` (what the web server does now).

Usage:
    python benchmarks/sorting_with_uploads.py --model models/trashnet-efficientnet-lite0-int8 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from machine import cpu_model, percentile

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "trashnet-efficientnet-lite0-int8"
DEFAULT_PHOTO = REPO_ROOT.parent / "shared" / "data" / "trashnet" / "glass" / "glass1.jpg"
MODES = ("no uploads", "equal turns", "loop first")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="bundle folder (default: the shipped one)")
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO,
                        help="a JPEG for both the loop's frames and the uploads (default: a TrashNet photo)")
    parser.add_argument("--uploaders", type=int, default=4, help="threads uploading without pause")
    parser.add_argument("--period", type=float, default=0.2, help="seconds between the loop's items")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of one mode's turn in a round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three modes")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON only")
    args = parser.parse_args(argv)
    if not (args.model / "manifest.json").is_file() or not args.photo.is_file():
        print(f"skipped: no model bundle at {args.model} or no photo at {args.photo}", file=sys.stderr)
        return 0

    from edge import imaging
    from edge.classifier import Classifier
    from edge.config import Config

    classifier = Classifier.from_path(args.model, threads=2, views=Config().model.views)
    jpeg = args.photo.read_bytes()
    frames = [imaging.decode_image(jpeg)] * 3
    for _ in range(5):  # warm-up
        classifier.classify_frames(frames)

    loop_ms: dict[str, list[float]] = {mode: [] for mode in MODES}
    uploads: dict[str, int] = {mode: 0 for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            ms, done = one_turn(classifier, frames, jpeg, mode, args)
            loop_ms[mode] += ms
            uploads[mode] += done
    figures = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(), "cpu": cpu_model(), "cores": os.cpu_count(),
        "model": args.model.name, "photo": args.photo.name, "views": list(classifier.views),
        "uploaders": args.uploaders, "period_s": args.period, "seconds_per_turn": args.seconds, "rounds": args.rounds,
        "modes": {mode: {"items": len(loop_ms[mode]),
                         "loop_classify_ms_median": round(statistics.median(loop_ms[mode]), 2),
                         "loop_classify_ms_p90": round(percentile(loop_ms[mode], 90), 2),
                         "uploads_per_s": round(uploads[mode] / (args.rounds * args.seconds), 1)} for mode in MODES},
    }
    alone = figures["modes"]["no uploads"]["loop_classify_ms_median"]
    for mode in MODES:
        figures["modes"][mode]["vs_no_uploads"] = round(figures["modes"][mode]["loop_classify_ms_median"] / alone, 3)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        report(figures)
    return 0


def one_turn(classifier, frames, jpeg: bytes, mode: str, args) -> tuple[list[float], int]:
    """Runs the loop (and the uploaders, unless ``no uploads``) for ``args.seconds``."""
    from edge import imaging
    from edge.web.server import MAX_CONCURRENT_DECODES

    stop = threading.Event()
    slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)  # uploads decoded and classified at once
    spec = classifier.bundle.manifest.input
    done = [0]

    def upload() -> None:
        while not stop.is_set():
            with slots:  # the decode and classify of WebServer.classify
                rgb = imaging.decode_image(jpeg, min_side=max(spec.height, spec.width),
                                           max_pixels=imaging.MAX_DECODED_PIXELS)
                classifier.classify(rgb, background=mode == "loop first")
            done[0] += 1

    uploaders = [] if mode == "no uploads" else \
        [threading.Thread(target=upload, daemon=True) for _ in range(args.uploaders)]
    for thread in uploaders:
        thread.start()
    time.sleep(0.5)  # the uploads are under way before the first item
    spent, ends = [], time.perf_counter() + args.seconds
    while time.perf_counter() < ends:
        spent.append(classifier.classify_frames(frames).latency_ms)
        time.sleep(args.period)
    stop.set()
    for thread in uploaders:
        thread.join(10)
    return spent, done[0]


def report(figures: dict) -> None:
    print(f"{figures['date']}, {figures['cpu']} ({figures['cores']} cores), {figures['model']}, "
          f"views {figures['views']}, {figures['uploaders']} uploaders, an item every {figures['period_s']} s")
    print("| mode | items | loop classify median | p90 | vs no uploads | uploads/s |")
    print("|---|---|---|---|---|---|")
    for mode, row in figures["modes"].items():
        print(f"| {mode} | {row['items']} | {row['loop_classify_ms_median']} ms | {row['loop_classify_ms_p90']} ms | "
              f"{row['vs_no_uploads']} | {row['uploads_per_s']} |")


if __name__ == "__main__":
    sys.exit(main())
