"""Class weights and focal loss against hand-computed values."""

import numpy as np
import pytest

from training.losses import FocalLoss, class_weights


def test_inverse_class_weights_balance_the_classes():
    weights = class_weights([10, 30], "inverse")
    # raw 1/10, 1/30 -> normalised so that sum(w * n) == 40
    np.testing.assert_allclose(weights, [2.0, 2.0 / 3.0])
    assert np.isclose((weights * [10, 30]).sum(), 40)


def test_effective_number_weights():
    beta = 0.9
    raw = np.array([(1 - beta) / (1 - beta ** 2), (1 - beta) / (1 - beta ** 4)])
    expected = raw * 6 / (raw * [2, 4]).sum()
    np.testing.assert_allclose(class_weights([2, 4], "effective", beta), expected)


def test_bad_class_weight_inputs():
    with pytest.raises(ValueError):
        class_weights([0, 3])
    with pytest.raises(ValueError):
        class_weights([1, 3], "sqrt")


def test_focal_loss_matches_the_formula():
    y_true = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32)
    y_pred = np.array([[0.2, 0.8], [0.6, 0.4]], np.float32)
    loss = FocalLoss(alpha=[0.25, 0.75], gamma=2.0, reduction=None)(y_true, y_pred)
    expected = [-0.75 * 0.2 ** 2 * np.log(0.8), -0.25 * 0.4 ** 2 * np.log(0.6)]
    np.testing.assert_allclose(np.asarray(loss), expected, rtol=1e-5)


def test_focal_loss_with_gamma_0_is_cross_entropy_with_smoothing():
    y_true = np.array([[0.0, 1.0]], np.float32)
    y_pred = np.array([[0.3, 0.7]], np.float32)
    loss = FocalLoss(gamma=0.0, label_smoothing=0.2, reduction=None)(y_true, y_pred)
    expected = -(0.1 * np.log(0.3) + 0.9 * np.log(0.7))
    np.testing.assert_allclose(np.asarray(loss), [expected], rtol=1e-5)
