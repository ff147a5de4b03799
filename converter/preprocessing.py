"""How far the bin's preprocessing is from training's: a guard that they give the model the same pixels.

Since session 13 training decodes and resizes with the bin's own functions (``edge.imaging``
through ``training.pipeline.load_image``), so both give the same pictures and the figures are 0.00
grey levels apart and full top-1 agreement. Until then training used TensorFlow's decoder and
``tf.image.resize`` (about 0.1 grey level apart since session 7, 1.0 before). The converter
measures it on the test split for every bundle, so a drift would show in the manifest instead of
hiding in the accuracy.

Usage:
    from converter.preprocessing import measure
    figures = measure(model, items, edge_images, edge_probabilities, targets)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from converter.runfolder import Item


def training_images(items: list[Item], size: int) -> np.ndarray | None:
    """The photos as ``training.pipeline.load_image`` makes them (uint8, rounded); ``None`` if one fails."""
    import tensorflow as tf

    from training.pipeline import load_image  # the real thing, so the two cannot drift

    images = []
    for item in items:
        try:
            images.append(load_image(tf.constant(str(item.path)), size).numpy())
        except (tf.errors.OpError, ValueError):
            return None
    return np.stack(images) if images else None


def measure(model, items: list[Item], edge_images: np.ndarray, edge_probabilities: np.ndarray,
            targets: np.ndarray) -> dict[str, Any] | None:
    """Pixel difference and float-model top-1 agreement between the two pipelines.

    Returns ``None`` when the two pipelines did not read the same photos (a photo only one
    decoder accepts), since the figures would then compare different sets.
    """
    from converter.keras_model import predict

    tf_images = training_images(items, edge_images.shape[1])
    if tf_images is None or tf_images.shape != edge_images.shape:
        return None
    edge_top1 = np.argmax(edge_probabilities, axis=1)
    # The same pictures give the same predictions: no second float pass over the split for them.
    same = np.array_equal(tf_images, edge_images)
    tf_top1 = edge_top1 if same else np.argmax(predict(model, tf_images), axis=1)
    return {
        "pixel_mean_abs_diff": round(float(np.abs(tf_images.astype(np.int16) - edge_images).mean()), 4),
        "float_top1_agreement": round(float(np.mean(tf_top1 == edge_top1)), 6),
        "float_accuracy_tensorflow_pipeline": round(float(np.mean(tf_top1 == targets)), 6),
    }
