"""``python -m edge classify [--model BUNDLE] IMAGE...``: classify photos, one JSON line each.

Each line holds ``path``, ``label``, ``confidence``, ``top3`` (``[label, p]`` pairs) and
``latency_ms``; an unreadable image gets a line with ``path`` and ``error`` instead, and
the command then exits 2 once every image has been tried. A missing or corrupt bundle is
one line on stderr and exit 2. Without ``--model`` the default config's ``model.path`` is used
(the shipped model in a checkout).

Usage:
    python -m edge classify --model models/trashnet-efficientnet-lite0-int8 photo1.jpg photo2.jpg
"""

from __future__ import annotations

import argparse
import json
import sys

from edge.errors import BundleError, ClassifierError, ConfigError

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``classify`` sub-command on an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "classify", help="classify photos with a model bundle (one JSON line per photo)",
        description="Classify photos with a model bundle; prints one JSON line per photo.")
    parser.add_argument("--model", metavar="BUNDLE",
                        help="model bundle folder (default: model.path of the default config, the shipped model)")
    parser.add_argument("--threads", type=int, default=2, help="LiteRT interpreter threads (default 2)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files (jpg, png, bmp, webp)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Classifies ``args.images`` with ``args.model``; returns the exit code."""
    from edge import imaging
    from edge.classifier import Classifier

    try:
        model = args.model or _configured_model()
    except ConfigError as err:
        for key, problem in err.problems:
            print(f"error: {key}: {problem} (in the default config; pass --model)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        classifier = Classifier.from_path(model, threads=getattr(args, "threads", 2))
    except (BundleError, ClassifierError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    exit_code = EXIT_OK
    for path in args.images:
        try:
            prediction = classifier.classify(imaging.read_image(path))
        except ValueError as err:
            exit_code = EXIT_BAD_INPUT
            line = {"path": path, "error": str(err)}
        else:
            line = {
                "path": path,
                "label": prediction.label,
                "confidence": round(prediction.confidence, 4),
                "top3": [[label, round(p, 4)] for label, p in prediction.top3],
                "latency_ms": round(prediction.latency_ms, 2),
            }
        print(json.dumps(line), flush=True)
    return exit_code


def _configured_model() -> str:
    """``model.path`` of the default config, resolved the way ``smartbin run`` resolves it."""
    from edge.config import load_config, model_dir

    return str(model_dir(load_config()))
