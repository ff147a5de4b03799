"""Every augmentation keeps shape, dtype and the 0..255 range; MixUp/CutMix keep labels summing to 1."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from training.augment import Augmenter  # noqa: E402
from training.config import AugmentConfig  # noqa: E402

OFF = dict(flip=False, rotate90=False, rotation=0.0, zoom=0.0, translation=0.0, brightness=0.0,
           contrast=0.0, saturation=0.0, hue=0.0, blur=0.0, erasing=0.0, rand_augment=False, mixup=0.0, cutmix=0.0)
ONE_AT_A_TIME = [("flip", True), ("rotate90", True), ("rotation", 0.1), ("zoom", 0.2), ("translation", 0.1),
                 ("brightness", 0.3), ("contrast", 0.3), ("saturation", 0.3), ("hue", 0.05), ("blur", 1.0),
                 ("erasing", 1.0), ("rand_augment", True), ("mixup", 1.0), ("cutmix", 1.0)]


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    labels = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    return images, labels


@pytest.mark.parametrize("key, value", ONE_AT_A_TIME)
def test_each_augmentation_keeps_shape_dtype_and_range(batch, key, value):
    augmenter = Augmenter(AugmentConfig(**{**OFF, key: value}), seed=1)
    images, labels = augmenter(*batch)
    images, labels = np.asarray(images), np.asarray(labels)
    assert images.shape == batch[0].shape and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-5)


def test_everything_off_changes_nothing(batch):
    images, labels = Augmenter(AugmentConfig(**OFF))(*batch)
    np.testing.assert_array_equal(np.asarray(images), batch[0])
    np.testing.assert_array_equal(np.asarray(labels), batch[1])


def test_augmenter_runs_inside_tf_data(batch):
    import tensorflow as tf

    augmenter = Augmenter(AugmentConfig(mixup=0.5, cutmix=0.5), seed=0)
    ds = tf.data.Dataset.from_tensor_slices(batch).batch(2).map(augmenter)
    shapes = [tuple(x.shape) for x, _ in ds]
    assert shapes == [(2, 32, 32, 3), (2, 32, 32, 3)]


def test_saturation_scales_by_one_plus_or_minus_the_strength():
    import tensorflow as tf

    from training.augment import saturation_factor

    low, high = saturation_factor(0.2)
    assert low / (1 - low) == pytest.approx(0.8) and high / (1 - high) == pytest.approx(1.2)
    rng = np.random.default_rng(0)
    # Strongly coloured images: red-ish pixels, saturation about 0.75.
    images = np.stack([np.full((16, 16, 3), (200, 60, 50), np.float32)] * 64)
    images += rng.normal(0, 3, images.shape).astype(np.float32)
    before = tf.image.rgb_to_hsv(images / 255.0)[..., 1].numpy().mean(axis=(1, 2))
    augmenter = Augmenter(AugmentConfig(**{**OFF, "saturation": 0.2}), seed=3)
    after_images, _ = augmenter(images, np.eye(3, dtype=np.float32)[[0] * 64])
    after = tf.image.rgb_to_hsv(np.asarray(after_images) / 255.0)[..., 1].numpy().mean(axis=(1, 2))
    ratio = after / before
    assert ratio.min() > 0.75 and ratio.max() < 1.25  # never the near-grey images of factor=0.2
    assert ratio.std() > 0.03                          # and it does vary


def test_every_random_layer_has_its_own_seed():
    config = AugmentConfig(**{**OFF, "flip": True, "rotation": 0.1, "zoom": 0.2, "translation": 0.1,
                              "brightness": 0.2, "erasing": 0.5, "mixup": 0.5, "cutmix": 0.5})
    augmenter = Augmenter(config, seed=7)
    seeds = [layer.seed for layer in augmenter.layers] + [augmenter.mixup.seed, augmenter.cutmix.seed]
    assert len(seeds) == 8 and len(set(seeds)) == len(seeds)


def test_zoom_and_rotation_draw_independent_numbers():
    config = AugmentConfig(**{**OFF, "rotation": 0.1, "zoom": 0.2})
    augmenter = Augmenter(config, seed=0)
    rotation, zoom = augmenter.layers
    images = np.zeros((256, 8, 8, 3), np.float32)
    angles = np.asarray(rotation.get_random_transformation(images)["angle"]).ravel()
    zooms = np.asarray(zoom.get_random_transformation(images)["height_zoom"]).ravel()
    assert abs(np.corrcoef(angles, zooms)[0, 1]) < 0.3


def test_one_seed_reproduces_the_augmented_batches(photo_folder):
    from training.data import discover
    from training.pipeline import make_dataset

    dataset = discover(photo_folder)
    items = dataset.items

    def first_batches():
        augmenter = Augmenter(AugmentConfig(mixup=0.5, cutmix=0.5), seed=4)
        ds = make_dataset(photo_folder, items, list(dataset.labels), 32, 4, training=True,
                          augmenter=augmenter, seed=4)
        return [np.asarray(x) for x, _ in ds.take(3)]

    for once, again in zip(first_batches(), first_batches()):
        np.testing.assert_array_equal(once, again)


@pytest.mark.parametrize("key, probability", [("erasing", 0.25), ("blur", 0.5)])
def test_erasing_and_blur_touch_the_configured_fraction_of_images(key, probability):
    import tensorflow as tf

    n = 800
    gradient = np.tile(np.linspace(0, 255, 16, dtype=np.float32)[None, :, None, None], (n, 1, 16, 3))
    labels = np.eye(3, dtype=np.float32)[np.zeros(n, int)]
    images, _ = Augmenter(AugmentConfig(**{**OFF, key: probability}), seed=0)(tf.constant(gradient), labels)
    changed = np.mean(np.abs(np.asarray(images) - gradient).reshape(n, -1).max(axis=1) > 0.5)
    assert changed == pytest.approx(probability, abs=0.06)  # Keras' factor=p alone gives about p / 2
