"""Class-imbalance tools: class weights and focal loss with per-class alpha.

Usage:
    weights = class_weights([403, 501, 410], "effective", beta=0.999)
    loss = FocalLoss(alpha=weights, gamma=2.0, label_smoothing=0.1)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def class_weights(counts, mode: str = "inverse", beta: float = 0.999) -> np.ndarray:
    """Per-class weights, normalised so that the weighted sample count equals the real one.

    Args:
        counts: samples per class.
        mode: ``inverse`` (1 / n) or ``effective`` (Cui et al. 2019: (1 - beta) / (1 - beta ** n)).
    """
    counts = np.asarray(counts, np.float64)
    if np.any(counts <= 0):
        raise ValueError("class_weights: every class needs at least one sample")
    if mode == "inverse":
        raw = 1.0 / counts
    elif mode == "effective":
        raw = (1.0 - beta) / (1.0 - np.power(beta, counts))
    else:
        raise ValueError(f"class_weights: unknown mode {mode!r} (inverse, effective)")
    return raw * counts.sum() / (raw * counts).sum()


@keras.saving.register_keras_serializable(package="smartbin")
class FocalLoss(keras.losses.Loss):
    """Categorical focal loss ``-sum(alpha_c * (1 - p_c)^gamma * y_c * log p_c)`` on probabilities.

    Args:
        alpha: per-class weights (list) or None for 1.
        gamma: focusing parameter; 0 gives (weighted) cross-entropy.
        label_smoothing: mixes the targets with the uniform distribution first.
    """

    def __init__(self, alpha=None, gamma: float = 2.0, label_smoothing: float = 0.0,
                 name: str = "focal_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.alpha = None if alpha is None else [float(a) for a in alpha]
        self.gamma = float(gamma)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        classes = ops.shape(y_true)[-1]
        if self.label_smoothing:
            y_true = y_true * (1.0 - self.label_smoothing) + self.label_smoothing / ops.cast(classes, y_pred.dtype)
        probs = ops.clip(y_pred, keras.backend.epsilon(), 1.0 - keras.backend.epsilon())
        loss = -y_true * ops.power(1.0 - probs, self.gamma) * ops.log(probs)
        if self.alpha is not None:
            loss = loss * ops.convert_to_tensor(self.alpha, dtype=y_pred.dtype)
        return ops.sum(loss, axis=-1)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma,
                "label_smoothing": self.label_smoothing}
