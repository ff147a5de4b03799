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
