"""Loading the run's float Keras model and running it on the evaluation photos.

Usage:
    from converter.keras_model import load_keras_model, predict
    model = load_keras_model(run.model_path, run.labels)
    probabilities = predict(model, images)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from converter import ConverterError

# TensorFlow's C++ start-up chatter drowns the converter's own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def load_keras_model(path: Path, labels: tuple[str, ...]):
    """Loads ``model.keras`` (keras-hub layers included) and checks it fits the run's labels.

    Raises:
        ConverterError: the file cannot be loaded, is not an image classifier taking
            ``(None, S, S, 3)``, or outputs a different number of classes than ``labels.txt``.
    """
    import keras
    import keras_hub  # noqa: F401  (registers EfficientNetBackbone & co. for deserialisation)

    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as err:  # Keras raises many types for one cause: an unusable file.
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConverterError(f"{path}: cannot load the Keras model: {message}") from None
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise ConverterError(f"{path}: expected one image input of shape (None, S, S, 3), got {model.input_shape}")
    classes = model.output_shape[-1]
    if classes != len(labels):
        raise ConverterError(f"{path}: model outputs {classes} classes but labels.txt names {len(labels)}")
    return model


def input_size(model) -> int:
    """The square input side ``S`` of a model taking ``(None, S, S, 3)``."""
    return int(model.input_shape[1])


def predict(model, images: np.ndarray, batch_size: int = 32, progress: bool = True) -> np.ndarray:
    """Float probabilities ``[N, classes]`` for uint8 RGB images (the model rescales itself)."""
    batches = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc="float model", unit="batch", file=sys.stderr, leave=False, disable=None)
    outputs = [_to_numpy(model(images[start:start + batch_size].astype(np.float32), training=False))
               for start in batches]
    if not outputs:
        return np.zeros((0, model.output_shape[-1]), np.float32)
    return np.concatenate(outputs).astype(np.float32)


def _to_numpy(tensor) -> np.ndarray:
    # EagerTensor.numpy() avoids NumPy 2's copy-keyword deprecation path of np.asarray(tensor).
    return np.asarray(tensor.numpy() if hasattr(tensor, "numpy") else tensor)


def versions() -> dict[str, str]:
    """Versions of the libraries that made the bundle, for the manifest."""
    from importlib import metadata

    found = {}
    for name in ("tensorflow", "keras", "keras-hub", "ai-edge-litert"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found
