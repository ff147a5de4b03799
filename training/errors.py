"""Errors the trainer reports as one clear line with exit code 2.

Usage:
    raise DataError("data/plastic: no images")
"""


class TrainingError(Exception):
    """Base class: bad input that stops a run before it starts."""


class DataError(TrainingError, ValueError):
    """A data folder, label map or split file is missing or inconsistent."""


class ModelError(TrainingError, ValueError):
    """An unknown backbone, preset or weights path."""
