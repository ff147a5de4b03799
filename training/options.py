"""Command-line checks of ``training.fit`` and ``training.evaluate``, made before any work.

Usage:
    parser.add_argument("--batch-size", type=positive_int)
    blocking = file_in_the_way(Path(args.out))   # a file where the output folder or a parent must be
    check_out_folder(Path(args.out)); seeds = parse_seeds("0,1,2")
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.errors import TrainingError


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, got {text!r}")
    return value


def file_in_the_way(folder: Path) -> Path | None:
    """The file at ``folder`` or at one of its parents, which would stop it being made; else None."""
    return next((path for path in [folder, *folder.parents] if path.exists() and not path.is_dir()), None)


def check_out_folder(out: Path) -> None:
    """Refuses, before any work, a ``--out`` that holds a run already or cannot become a folder."""
    blocking = file_in_the_way(out)
    if blocking is not None:
        raise TrainingError(f"{out}: cannot be a run folder: {blocking} is a file (choose another --out)")
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out}: run folder exists and is not empty (choose a new --out)")


def parse_seeds(text: str) -> list[int]:
    """``--seeds 0,1,2`` as distinct whole numbers of 0 or more; else TrainingError."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise TrainingError(f"--seeds: expected comma-separated whole numbers such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise TrainingError(f"--seeds: expected distinct seeds of 0 or more, got {text!r}")
    return seeds
