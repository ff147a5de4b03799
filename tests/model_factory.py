"""Builds a tiny but real INT8 LiteRT bundle for tests (TensorFlow needed only here).

Usage:
    from tests.model_factory import build_tiny_bundle
    path = build_tiny_bundle(tmp / "tiny", ("a", "b", "c"), 32)
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from converter.quantize import convert
from edge.bundle import InputSpec, Manifest, OutputSpec, write_bundle


def tiny_keras_model(num_classes: int, size: int):
    """A small CNN that takes raw RGB (0..255) and rescales inside, like the real models."""
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 128.0, offset=-127 / 128.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs)


def colour_samples(num_classes: int, size: int, per_class: int = 16, seed: int = 0):
    from tests.conftest import make_photo

    images, labels = [], []
    for index in range(num_classes):
        for i in range(per_class):
            images.append(make_photo(index, size=(size, size), seed=seed + index * 100 + i))
            labels.append(index)
    return np.stack(images).astype(np.float32), np.array(labels)


def build_tiny_bundle(folder: Path, labels, size: int) -> Path:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    model = tiny_keras_model(len(labels), size)
    images, targets = colour_samples(len(labels), size)
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy")
    model.fit(images, targets, epochs=15, batch_size=16, verbose=0)

    # The converter's own INT8 path (raw uint8 RGB in, scale 1 / zero point 0), not a second copy of it.
    model_bytes = convert(model, "int8", images.astype(np.uint8))
    manifest = Manifest(
        labels=tuple(labels), model_file="model.tflite", sha256="0" * 64,
        input=InputSpec(height=size, width=size), output=OutputSpec(),
        backbone="tiny_cnn", quantization="int8",
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source_run="tests", versions={"tensorflow": tf.__version__},
    )
    write_bundle(folder, model_bytes, manifest)
    return folder
