"""Errors the trainer reports as one clear line with exit code 2.

Usage:
    raise DataError("data/plastic: no images")
    raise ModelError(f"{path}: not a loadable Keras model ({first_line(err)})")
"""


class TrainingError(Exception):
    """Base class: bad input that stops a run before it starts."""


class DataError(TrainingError, ValueError):
    """A data folder, label map or split file is missing or inconsistent."""


class ModelError(TrainingError, ValueError):
    """An unknown backbone, preset or weights path."""


def first_line(err: BaseException) -> str:
    """The first line of an error's text (libraries raise multi-line ones), or its type's name."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
