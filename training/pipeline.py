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

from edge.image_header import PNG_SIGNATURE

AUTOTUNE = tf.data.AUTOTUNE


EXIF_ORIENTATION_TAG = 0x0112


def exif_orientation(path: str | Path) -> int:
    """The EXIF orientation (1-8) of an image file; 1 when it has none or it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                # Pillow's getexif() decodes a whole PNG that has no eXIf chunk before its pixels
                # (70 ms for 3 MP); the chunk, when there is one, is already in image.info.
                raw = image.info.get("exif")
                exif = Image.Exif()
                if raw:
                    exif.load(raw)
            else:
                exif = image.getexif()
            value = exif.get(EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 -- unreadable files are listed and skipped elsewhere
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def on_white(rgba: tf.Tensor) -> tf.Tensor:
    """RGB uint8 of an RGBA uint8 image, its transparent parts shown on white, to the same integers as
    the bin's decoder (``edge.imaging``): a cut-out is not the colours its transparent pixels hide."""
    colour, alpha = tf.cast(rgba[..., :3], tf.int32), tf.cast(rgba[..., 3:], tf.int32)
    return tf.cast((colour * alpha + 255 * (255 - alpha) + 127) // 255, tf.uint8)


def _decode_webp(data: tf.Tensor) -> tf.Tensor:
    image = tf.io.decode_image(data, channels=0, expand_animations=False)  # 3 or 4 channels, as stored
    rgb = tf.cond(tf.shape(image)[-1] == 4, lambda: on_white(image), lambda: image[..., :3])
    return tf.ensure_shape(rgb, [None, None, 3])


def decode_rgb(data: tf.Tensor) -> tf.Tensor:
    """RGB uint8 from an encoded image, with the pixels the bin's OpenCV decodes: JPEG through libjpeg's
    accurate integer DCT (OpenCV's; TensorFlow's default fast DCT differs by about a grey level), the
    transparent parts of a PNG or WebP on white."""
    head = tf.strings.substr(data, 0, 12)
    is_png = tf.strings.substr(head, 0, 8) == PNG_SIGNATURE
    is_webp = tf.logical_and(tf.strings.substr(head, 0, 4) == b"RIFF", tf.strings.substr(head, 8, 4) == b"WEBP")
    return tf.case([(tf.io.is_jpeg(data), lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")),
                    (is_png, lambda: on_white(tf.io.decode_png(data, channels=4))),
                    (is_webp, lambda: _decode_webp(data))],
                   default=lambda: tf.io.decode_image(data, channels=3, expand_animations=False), exclusive=True)


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
    """Reads one file and returns a ``size x size x 3`` uint8 RGB image (upright, stretched, no crop)."""
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
