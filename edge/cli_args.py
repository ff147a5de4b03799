"""Argument types shared by the ``smartbin`` sub-commands.

Usage:
    parser.add_argument("--config", type=path_argument)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def path_argument(text: str) -> Path:
    """A path option's value; an empty one (``''``) would otherwise be read as the current folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path names no file or folder")
    return Path(text)
