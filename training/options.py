"""Command-line checks shared by ``training.fit`` and ``training.evaluate``, made before any work.

Usage:
    parser.add_argument("--batch-size", type=positive_int)
    blocking = file_in_the_way(Path(args.out))   # a file where the output folder or a parent must be
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
