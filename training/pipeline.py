"""The tf.data input pipeline: decode -> RGB -> upright (EXIF) -> resize whole image (bilinear, no
crop) -> uint8, cached.

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


EXIF_ORIENTATION_TAG = 0x0112
JPEG_SIGNATURE = b"\xff\xd8"


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation (1-8) of a JPEG file; 1 when it has none, cannot be read, or is no JPEG
    (other formats are decoded by the bin's own decoder, which turns them itself)."""
    from PIL import Image

    try:
        with open(path, "rb") as handle:
            if handle.read(2) != JPEG_SIGNATURE:
                return 1
        with Image.open(path) as image:
            value = image.getexif().get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 -- unreadable files are listed and skipped elsewhere
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decoded_by_the_bin(data: np.ndarray) -> np.ndarray:
    from edge import imaging

    return imaging.decode_image(data.item())  # a 0-d array holding the file's bytes


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """RGB uint8 from an encoded image, with the pixels the bin decodes: a JPEG through libjpeg's
    accurate integer DCT (OpenCV's; TensorFlow's default fast DCT differs by about a grey level), not
    yet turned by its EXIF orientation (``upright``); any other format by the bin's own decoder
    (``edge.imaging.decode_image``: upright, transparent parts on white, palettes read as colours),
    so the two cannot disagree on a PNG, WebP or BMP."""
    def by_the_bin():
        image = tf.numpy_function(_decoded_by_the_bin, [data], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"), by_the_bin)


def upright(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """Turns an image as its EXIF orientation says, as OpenCV's imread does on the bin (a phone photo
    taken upright trains upright, not on its side)."""
    turns = [lambda: image,
             lambda: tf.image.flip_left_right(image),
             lambda: tf.image.rot90(image, 2),
             lambda: tf.image.flip_up_down(image),
             lambda: tf.image.transpose(image),
             lambda: tf.image.rot90(image, 3),
             lambda: tf.image.rot90(tf.image.transpose(image), 2),
             lambda: tf.image.rot90(image, 1)]
    return tf.switch_case(tf.cast(orientation, tf.int32) - 1, turns)


def load_image(path: tf.Tensor, size: int, orientation: tf.Tensor | int = 1) -> tf.Tensor:
    """Reads one file and returns a ``size x size x 3`` uint8 RGB image (upright, stretched, no crop);
    ``orientation`` is the file's ``exif_orientation``."""
    image = upright(decode_rgb(tf.io.read_file(path)), orientation)
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
    orientations = [exif_orientation(path) for path in paths]  # the header only: fast
    ds = tf.data.Dataset.from_tensor_slices((paths, orientations, targets))
    ds = ds.map(lambda p, o, t: (load_image(p, size, o), tf.one_hot(t, len(labels))), num_parallel_calls=AUTOTUNE)
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
