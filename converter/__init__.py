"""Run folder → verified LiteRT model bundle: ``python -m converter``.

Reads the run folder ``training.fit`` writes, converts its Keras model to LiteRT
(full-integer INT8 by default), proves the converted model on the run's test split
against the float model, and writes a bundle through the ``edge.bundle`` contract.
``python -m converter bench BUNDLE`` times it against the float32 model of the same run.

Usage:
    python -m converter runs/efflite0 --out models/trashnet-efflite0-int8
    python -m converter bench models/trashnet-efflite0-int8 --threads 1,2,4
"""

from edge.errors import SmartbinError


class ConverterError(SmartbinError, ValueError):
    """Bad input to the converter: a run folder, data folder, output folder or model file it cannot use.

    The CLI prints the message as one line and exits with code 2.
    """


class GateError(SmartbinError, RuntimeError):
    """The converted model lost more accuracy than ``--max-drop`` allows; no bundle was written.

    The CLI prints the message and exits with code 1.
    """
