"""Training augmentation from Keras 3 core preprocessing layers, applied to uint8-valued batches.

Per-image geometry and colour run on each batch; MixUp and CutMix mix whole batches and
their one-hot labels. Every layer keeps shape and the 0..255 value range, and every layer
gets its own seed: layers built with one seed draw the same random numbers, so zoom and
rotation (for example) would always move together.

Usage:
    augmenter = Augmenter(AugmentConfig(mixup=0.5), seed=0)
    images, labels = augmenter(images, one_hot_labels)   # inside tf.data, on float32 batches
"""

from __future__ import annotations

import keras
import tensorflow as tf

from training.config import AugmentConfig

VALUE_RANGE = (0, 255)


def saturation_factor(strength: float) -> tuple[float, float]:
    """Keras' saturation ``factor`` range that scales saturation by ``1 - strength .. 1 + strength``.

    ``RandomSaturation`` (and ``RandomColorJitter``) multiply saturation by ``f / (1 - f)``
    for a factor ``f`` drawn in the range: 0.5 leaves an image unchanged, and a single float
    ``s`` means the range ``[0, s]``, i.e. a multiplier of at most ``s / (1 - s)`` -- ``0.2``
    would make every image nearly grey. ``f = (1 +- s) / (2 +- s)`` gives ``1 +- s`` exactly.
    """
    if not 0.0 <= strength < 1.0:
        raise ValueError(f"saturation strength must be in [0, 1), got {strength}")
    return ((1.0 - strength) / (2.0 - strength), (1.0 + strength) / (2.0 + strength))


def rotate90(images: tf.Tensor, seed_generator: keras.random.SeedGenerator) -> tf.Tensor:
    """Turns each image by a random multiple of 90 degrees (square images keep their shape)."""
    turns = keras.random.randint((tf.shape(images)[0],), 0, 4, seed=seed_generator)
    return tf.map_fn(lambda pair: tf.image.rot90(pair[0], pair[1]), (images, turns),
                     fn_output_signature=images.dtype)


class Augmenter:
    """Builds the layers once and applies them to ``(images, one_hot_labels)`` batches."""

    def __init__(self, config: AugmentConfig, seed: int = 0):
        self.config = config
        seeds = iter(range(seed * 100, seed * 100 + 100))  # one distinct seed per random source
        self.seed_generator = keras.random.SeedGenerator(next(seeds))
        self.layers = self._per_image_layers(config, seeds)
        self.mixup = keras.layers.MixUp(alpha=0.2, seed=next(seeds)) if config.mixup > 0 else None
        self.cutmix = keras.layers.CutMix(factor=1.0, seed=next(seeds)) if config.cutmix > 0 else None

    @staticmethod
    def _per_image_layers(config: AugmentConfig, seeds) -> list[keras.layers.Layer]:
        layers = []
        if config.flip:
            layers.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=next(seeds)))
        if config.rotation:
            layers.append(keras.layers.RandomRotation(config.rotation, fill_mode="reflect", seed=next(seeds)))
        if config.zoom:
            layers.append(keras.layers.RandomZoom((-config.zoom, config.zoom), fill_mode="reflect",
                                                  seed=next(seeds)))
        if config.translation:
            layers.append(keras.layers.RandomTranslation(config.translation, config.translation,
                                                         fill_mode="reflect", seed=next(seeds)))
        if config.rand_augment:
            layers.append(keras.layers.RandAugment(value_range=VALUE_RANGE, num_ops=2, factor=0.5, seed=next(seeds)))
        elif any((config.brightness, config.contrast, config.saturation, config.hue)):
            layers.append(keras.layers.RandomColorJitter(
                value_range=VALUE_RANGE, brightness_factor=config.brightness or None,
                contrast_factor=config.contrast or None,
                saturation_factor=saturation_factor(config.saturation) if config.saturation else None,
                hue_factor=config.hue or None, seed=next(seeds)))
        # factor=(p, p), not p: Keras reads a single number p as a range (0, p), draws the probability from
        # it and so applies the layer to about p/2 of the images, not to the fraction p the config promises.
        if config.blur:
            layers.append(keras.layers.RandomGaussianBlur(factor=(config.blur, config.blur), kernel_size=3, sigma=(1.0, 1.0),
                                                          value_range=VALUE_RANGE, seed=next(seeds)))
        if config.erasing:
            layers.append(keras.layers.RandomErasing(factor=(config.erasing, config.erasing), scale=(0.02, 0.2),
                                                     fill_value=127.0, value_range=VALUE_RANGE, seed=next(seeds)))
        return layers

    def __call__(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.cast(images, tf.float32)
        if self.config.rotate90:
            images = rotate90(images, self.seed_generator)
        for layer in self.layers:
            images = layer(images, training=True)
        images = tf.clip_by_value(images, *VALUE_RANGE)
        labels = tf.cast(labels, tf.float32)
        for layer, probability in ((self.mixup, self.config.mixup), (self.cutmix, self.config.cutmix)):
            if layer is not None:
                mixed = layer({"images": images, "labels": labels}, training=True)
                apply = keras.random.uniform((), seed=self.seed_generator) < probability
                images = tf.where(apply, mixed["images"], images)
                labels = tf.where(apply, tf.cast(mixed["labels"], tf.float32), labels)
        return images, labels
