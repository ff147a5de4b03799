"""The tf.data input pipeline: each photo decoded and stretched to the model's size by the bin's
own functions (``edge.imaging``), cached, then shuffled, batched and augmented.

The model is trained on exactly the pixels the bin gives it: the same decoder (libjpeg's accurate
integer DCT, EXIF orientation, transparency on white, palettes in their colours) and the same
bilinear resize of the whole photo (no crop). Rescaling lives inside the model, so batches hold raw
0..255 RGB values, exactly what the exported model takes on the device.

Usage:
    train = make_dataset(root, split["train"], labels, 224, 32, training=True, augmenter=aug)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def as_the_bin_sees_it(data: bytes, size: int) -> np.ndarray:
    """The ``size x size x 3`` uint8 RGB picture the bin's classifier is given for an encoded photo.

    Raises:
        ValueError: not an image the bin reads, or one over its pixel limit (``edge.imaging``).
    """
    from edge import imaging
    from edge.bundle import InputSpec

    photo = imaging.decode_image(data, max_pixels=imaging.MAX_DECODED_PIXELS)
    return imaging.resize_for_model(photo, InputSpec(height=size, width=size))


def load_image(path: tf.Tensor, size: int) -> tf.Tensor:
    """Reads one file and returns a ``size x size x 3`` uint8 RGB image, as the bin classifies it."""
    def pictured(data) -> np.ndarray:
        # tf.data hands a graph's string over as bytes, an eager call as a 0-d array holding them.
        return as_the_bin_sees_it(data if isinstance(data, bytes) else data.item(), size)

    image = tf.numpy_function(pictured, [tf.io.read_file(path)], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [size, size, 3])


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
    if training:
        # A photo deleted or damaged after the scan (the scan checked every file) is skipped with
        # TensorFlow's warning, not a crash halfway through an epoch. Never when scoring: there every
        # prediction must stay beside its photo's label.
        ds = ds.ignore_errors(log_warning=True)
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
