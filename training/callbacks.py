"""Training callbacks: validation macro-F1 with best checkpoint and early stopping, and tqdm bars.

Usage:
    best = BestMacroF1(val_ds, val_targets, labels, run_dir / "model.keras", patience=5)
    model.fit(train_ds, epochs=10, callbacks=[TqdmProgress("fine-tune"), best])
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from training.metrics import classification_metrics


# Axes each view of ``edge.imaging.VIEWS`` reverses in a batch of NHWC images.
_VIEW_AXES = {"original": (), "mirrored": (2,), "flipped": (1,), "turned": (1, 2)}


def predict(model: keras.Model, dataset, desc: str = "predicting", views=("original",)) -> np.ndarray:
    """Probabilities for every batch of ``dataset`` (images first in each element), with a progress bar;
    with several ``views`` (names of ``edge.imaging.VIEWS``), the mean over those views of each image."""
    import tensorflow as tf

    outputs = []
    for batch in tqdm(dataset, desc=desc, unit="batch", leave=False, file=sys.stderr):
        images = batch[0]
        probabilities = [np.asarray(model(tf.reverse(images, axis=list(_VIEW_AXES[name])) if _VIEW_AXES[name]
                                          else images, training=False)) for name in views]
        outputs.append(np.mean(probabilities, axis=0))
    return np.concatenate(outputs) if outputs else np.zeros((0, model.output_shape[-1]))


class BestMacroF1(keras.callbacks.Callback):
    """Scores the validation split after each epoch; keeps and saves the best model by macro-F1.

    Adds ``val_macro_f1`` and ``val_acc`` to the epoch logs (so they land in history.csv),
    stops training after ``patience`` epochs without improvement, and restores the best weights
    at the end of each phase. The best score carries across phases. With ``keep_last`` (a final
    fit, which trains on the val photos) every epoch is kept in turn, so the last one is saved.
    """

    def __init__(self, val_ds, val_targets, labels, checkpoint: Path, patience: int = 5, to_save=None,
                 keep_last: bool = False):
        super().__init__()
        self.to_save = to_save  # the full model, when training runs on a cached-feature sub-model
        self.keep_last = keep_last
        self.val_ds, self.val_targets, self.labels = val_ds, np.asarray(val_targets), list(labels)
        self.checkpoint, self.patience = Path(checkpoint), patience
        self.best_f1, self.best_weights, self.best_epoch, self.wait = -1.0, None, None, 0
        self.phase = ""

    def on_train_begin(self, logs=None):
        self.wait = 0

    def on_epoch_end(self, epoch, logs=None):
        probabilities = predict(self.model, self.val_ds, "validating")
        if not np.isfinite(probabilities).all():  # diverged: the fit stops; a NaN model is never saved
            self.model.stop_training = True
            return
        report = classification_metrics(self.val_targets, probabilities, self.labels)
        if logs is not None:
            logs["val_macro_f1"] = report["macro_f1"]
            logs["val_acc"] = report["accuracy"]
        if self.keep_last or report["macro_f1"] > self.best_f1:
            self.best_f1, self.best_epoch, self.wait = report["macro_f1"], f"{self.phase} {epoch + 1}", 0
            self.best_weights = self.model.get_weights()
            (self.to_save or self.model).save(self.checkpoint)
        else:
            self.wait += 1
            if self.patience and self.wait >= self.patience:
                self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def epoch_callbacks(ema: float, best: BestMacroF1, *others: keras.callbacks.Callback) -> list:
    """The callbacks of one phase's ``fit``, in order: with ``ema`` > 0 Keras' ``SwapEMAWeights``
    first, so the weights' moving average is in the model when ``best`` scores and saves it at each
    epoch's end (and the raw weights are back for the next epoch's steps), then ``best``, then the rest."""
    averaged = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema > 0 else []
    return [*averaged, best, *others]


class StopOnNaN(keras.callbacks.Callback):
    """Stops training at the first batch whose loss is not a finite number, or at the end of an epoch
    whose weights are not (the last step's update shows in no loss), and remembers where, so that a
    diverged run fails instead of being saved and evaluated as if it had learnt. Put it first: the
    epoch-end check must come before ``BestMacroF1`` restores earlier weights at the end of a fit."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase, self.epoch, self.diverged = phase, 0, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss) and self.diverged is None:
            self.diverged = f"the loss became {loss} in {self.phase} epoch {self.epoch}, step {batch + 1}"
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        if self.diverged is None and not all(np.isfinite(w).all() for w in self.model.get_weights()):
            self.diverged = f"the weights became infinite or NaN in {self.phase} epoch {self.epoch}"
            self.model.stop_training = True


class TqdmProgress(keras.callbacks.Callback):
    """One tqdm bar per epoch with the running loss (readable in a log file too)."""

    def __init__(self, desc: str, steps: int | None = None):
        super().__init__()
        self.desc, self.steps, self.bar = desc, steps, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.steps, desc=f"{self.desc} epoch {epoch + 1}", unit="step",
                        file=sys.stderr, mininterval=5)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        if self.bar is not None:
            shown = {k: f"{float(v):.4f}" for k, v in (logs or {}).items() if k in ("loss", "val_macro_f1", "val_acc")}
            self.bar.set_postfix(shown)
            self.bar.close()
