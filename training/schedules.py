"""Learning-rate schedules: cosine decay with linear warm-up, and OneCycle.

Usage:
    lr = make_schedule("cosine", peak=2e-4, total_steps=1200, warmup_steps=55)
    optimizer = make_optimizer("adamw", lr, weight_decay=1e-4, clipnorm=1.0)
"""

from __future__ import annotations

import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="smartbin")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle: cosine rise from peak/div to peak over ``pct_start``, then cosine fall to ~0."""

    def __init__(self, peak: float, total_steps: int, pct_start: float = 0.3, div: float = 25.0,
                 final_div: float = 1e4):
        self.peak, self.total_steps, self.pct_start = float(peak), int(total_steps), float(pct_start)
        self.div, self.final_div = float(div), float(final_div)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = max(1.0, self.total_steps * self.pct_start)
        fall = max(1.0, self.total_steps - rise)
        start, end = self.peak / self.div, self.peak / self.final_div

        def cosine(a, b, t):
            return b + (a - b) * (1 + ops.cos(math.pi * ops.clip(t, 0.0, 1.0))) / 2

        return ops.where(step < rise, cosine(start, self.peak, step / rise),
                         cosine(self.peak, end, (step - rise) / fall))

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div": self.div, "final_div": self.final_div}


def make_schedule(kind: str, peak: float, total_steps: int, warmup_steps: int = 0):
    total_steps = max(1, total_steps)
    if kind == "constant":
        return peak
    if kind == "onecycle":
        return OneCycle(peak, total_steps)
    if kind == "cosine":
        warmup_steps = min(warmup_steps, total_steps - 1)
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=peak / 10 if warmup_steps else peak,
            decay_steps=max(1, total_steps - warmup_steps), alpha=0.01,
            warmup_target=peak if warmup_steps else None, warmup_steps=warmup_steps)
    raise ValueError(f"unknown schedule {kind!r} (cosine, onecycle, constant)")


# Biases and BatchNorm's scale and shift are not decayed: shrinking them toward 0 regularises nothing
# and moves the layer's output (the usual AdamW practice).
NO_WEIGHT_DECAY = ["bias", "gamma", "beta"]


def make_optimizer(kind: str, learning_rate, weight_decay: float, clipnorm: float | None, ema: float = 0.0):
    """AdamW or Nesterov SGD; with ``ema`` > 0 it also keeps an exponential moving average of the
    weights (Keras' ``use_ema``, that momentum per step), which ``keras.callbacks.SwapEMAWeights``
    puts in the model for validation and checkpoints."""
    averaging = {"use_ema": True, "ema_momentum": ema} if ema > 0 else {}
    if kind == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, clipnorm=clipnorm, **averaging)
    elif kind == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True,
                                         weight_decay=weight_decay, clipnorm=clipnorm, **averaging)
    else:
        raise ValueError(f"unknown optimizer {kind!r} (adamw, sgd)")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer
