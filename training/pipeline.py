"""The tf.data input pipeline: decode -> RGB -> resize whole image (bilinear, no crop) -> uint8, cached.

Rescaling lives inside the model, so batches hold raw 0..255 RGB values, exactly what the
exported model takes on the device.

Usage:
    train = make_dataset(root, split["train"], labels, 224, 32, training=True, augmenter=aug)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def load_image(path: tf.Tensor, size: int) -> tf.Tensor:
    """Reads one file and returns a ``size x size x 3`` uint8 RGB image (stretched, no crop)."""
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
    image = tf.image.resize(image, (size, size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def make_dataset(root: str | Path, items: list[tuple[str, str]], labels: list[str], size: int,
                 batch_size: int, training: bool = False, augmenter=None, class_weights=None,
                 seed: int = 0, cache: bool = True) -> tf.data.Dataset:
    """Batches of ``(images float32 0..255, one-hot labels[, sample weights])``.

    Args:
        items: (path relative to root, label) pairs.
        class_weights: optional per-class weights; each sample's weight is its (soft) label
            times these, so MixUp/CutMix samples get a blended weight.
    """
    index = {label: i for i, label in enumerate(labels)}
    paths = [str(Path(root) / rel) for rel, _ in items]
    targets = [index[label] for _, label in items]
    ds = tf.data.Dataset.from_tensor_slices((paths, targets))
    ds = ds.map(lambda p, t: (load_image(p, size), tf.one_hot(t, len(labels))), num_parallel_calls=AUTOTUNE)
    if cache:
        ds = ds.cache()
    if training:
        ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=training and len(items) >= batch_size)
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if training and augmenter is not None:
        # Sequential on purpose: the augmenter's random state is shared, and parallel calls would
        # draw it in a different order every run, so one seed would not reproduce a run.
        ds = ds.map(augmenter)
    if class_weights is not None:
        weights = tf.constant(np.asarray(class_weights, np.float32))
        ds = ds.map(lambda x, y: (x, y, tf.reduce_sum(y * weights, axis=-1)), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
