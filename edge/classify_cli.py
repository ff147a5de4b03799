"""``python -m edge classify [--model BUNDLE] IMAGE...``: classify photos, one JSON line each.

Each line holds ``path``, ``label``, ``confidence``, ``top3`` (``[label, p]`` pairs) and
``latency_ms``; an unreadable image gets a line with ``path`` and ``error`` instead, and
the command then exits 2 once every image has been tried. A missing or corrupt bundle is
one line on stderr and exit 2. Without ``--model`` the default config's ``model.path``,
``model.threads`` and ``model.views`` are used (the shipped model in a checkout); with it,
``--threads`` and ``--views`` default to the config schema's defaults, so both paths classify a
photo as ``smartbin run`` classifies an item lying still on the tray (every view, averaged).

Usage:
    python -m edge classify --model models/trashnet-efficientnet-lite0-int8 photo1.jpg photo2.jpg
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.cli_args import path_argument
from edge.errors import BundleError, ClassifierError, ConfigError

EXIT_OK = 0
EXIT_BAD_INPUT = 2


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers the ``classify`` sub-command on an argparse ``subparsers`` object."""
    parser = subparsers.add_parser(
        "classify", help="classify photos with a model bundle (one JSON line per photo)",
        description="Classify photos with a model bundle; prints one JSON line per photo.")
    parser.add_argument("--model", metavar="BUNDLE", type=path_argument,
                        help="model bundle folder (default: model.path of the default config, the shipped model)")
    parser.add_argument("--threads", type=_thread_count, metavar="N",
                        help="LiteRT interpreter threads (default: model.threads of the default config "
                             "without --model, the config's default 2 with it)")
    parser.add_argument("--views", type=_views, metavar="V,V,...",
                        help="how the model is shown each photo, averaged: original, mirrored, flipped, turned "
                             "(default: model.views of the default config without --model, the config's default "
                             "original,mirrored,flipped with it)")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photo files (jpg, png, bmp, webp)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Classifies ``args.images`` with ``args.model``; returns the exit code."""
    from edge import imaging
    from edge.classifier import Classifier

    try:
        model, threads, views = (args.model, *_schema_defaults()) if args.model else _configured_model()
    except ConfigError as err:
        for key, problem in err.problems:
            print(f"error: {key}: {problem} (in the default config; pass --model)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        classifier = Classifier.from_path(model, threads=args.threads or threads, views=args.views or views)
    except (BundleError, ClassifierError) as err:
        from edge import config as edge_config

        # Only where no config named the model (a pip install from a URL): a config's own model.path is fixed there.
        hint = "" if args.model or Path(model).exists() or edge_config.DEFAULT_CONFIG.is_file() else (
            " (no --model given and no default config: the default model ships in a source checkout's models/ "
            "folder, not in a pip install from a URL; pass --model BUNDLE)")
        print(f"error: {err}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    exit_code = EXIT_OK
    for path in args.images:
        shown = imaging.utf8_text(path)  # a name from an old camera card must not break a JSON parser
        try:
            # The bin's limit: a small PNG can unpack to gigabytes (30000x30000: 5.4 GB).
            photo = imaging.read_image(path, max_pixels=imaging.MAX_DECODED_PIXELS)
            prediction = classifier.classify(photo)
        except ValueError as err:
            exit_code = EXIT_BAD_INPUT
            line = {"path": shown, "error": imaging.utf8_text(str(err))}
        else:
            line = {
                "path": shown,
                "label": prediction.label,
                "confidence": round(prediction.confidence, 4),
                "top3": [[label, round(p, 4)] for label, p in prediction.top3],
                "latency_ms": round(prediction.latency_ms, 2),
            }
        try:
            print(json.dumps(line), flush=True)
        except BrokenPipeError:  # "| head -1": the reader has what it wanted
            _silence_stdout()
            return exit_code
    return exit_code


def _silence_stdout() -> None:
    # Python flushes stdout again at exit and would print a second BrokenPipeError there.
    import os

    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _thread_count(text: str) -> int:
    """1-16, as the config's ``model.threads`` (99999 threads crashed the process)."""
    from edge.config_schema import MAX_THREADS as most

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= most:
        raise argparse.ArgumentTypeError(f"must be 1 to {most}, got {value}")
    return value


def _views(text: str) -> list[str]:
    from edge.imaging import parse_views

    try:
        return parse_views(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _configured_model() -> tuple[str, int, list[str]]:
    """``model.path`` (resolved the way ``smartbin run`` resolves it), ``model.threads`` and ``model.views``
    of the default config."""
    from edge.config import load_config, model_dir

    config = load_config()
    return str(model_dir(config)), config.model.threads, config.model.views


def _schema_defaults() -> tuple[int, list[str]]:
    """The schema's defaults for ``model.threads`` and ``model.views``, used when ``--model`` names a bundle."""
    from edge.config_schema import ModelConfig

    return ModelConfig.model_fields["threads"].default, ModelConfig.model_fields["views"].default
