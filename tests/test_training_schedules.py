"""Learning-rate schedules rise and fall where they promise; weight decay spares biases and BatchNorm."""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

import keras  # noqa: E402

from training.schedules import make_optimizer, make_schedule  # noqa: E402


def rate(schedule, step: int) -> float:
    return float(keras.ops.convert_to_numpy(schedule(step)))


def test_cosine_warms_up_from_a_tenth_to_the_peak_then_decays_to_a_hundredth():
    schedule = make_schedule("cosine", peak=1e-3, total_steps=100, warmup_steps=10)
    assert rate(schedule, 0) == pytest.approx(1e-4)
    assert rate(schedule, 10) == pytest.approx(1e-3)
    assert rate(schedule, 100) == pytest.approx(1e-5, rel=1e-3)
    assert rate(schedule, 5) < rate(schedule, 10) > rate(schedule, 50)


def test_onecycle_peaks_at_thirty_percent_and_ends_near_zero():
    schedule = make_schedule("onecycle", peak=1e-3, total_steps=100)
    rates = [rate(schedule, step) for step in range(101)]
    assert int(np.argmax(rates)) == 30 and rates[0] == pytest.approx(1e-3 / 25, rel=1e-4)
    assert rates[-1] == pytest.approx(1e-7, rel=1e-2)


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_weight_decay_shrinks_kernels_but_not_biases(kind):
    layer = keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")
    layer.build((None, 2))
    optimizer = make_optimizer(kind, 0.1, weight_decay=0.5, clipnorm=None)
    zero = [keras.ops.zeros_like(variable) for variable in layer.trainable_variables]
    optimizer.apply_gradients(zip(zero, layer.trainable_variables))
    kernel, bias = (keras.ops.convert_to_numpy(v) for v in (layer.kernel, layer.bias))
    assert np.all(kernel < 1.0) and np.all(bias == 1.0)


class Trained:
    """What ``fitted`` saw: the weights after every step, at each epoch's scoring, at the end, and saved."""

    def __init__(self):
        self.steps, self.scored = [], []
        self.after = self.saved = self.best = None


def fitted(tmp_path, ema: float, stop_early: bool = False, keep_last: bool = False) -> Trained:
    """A softmax layer trained hard (SGD at lr 5, 4 steps per epoch) for 3 epochs with the callbacks
    ``training.fit`` uses (``epoch_callbacks``), and a spy after them."""
    import tensorflow as tf

    from training.callbacks import BestMacroF1, epoch_callbacks

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    images = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    targets = (images[:, 0] > 0).astype(int)
    train = tf.data.Dataset.from_tensor_slices((images, keras.utils.to_categorical(targets, 2))).batch(8)
    val = tf.data.Dataset.from_tensor_slices((images, targets)).batch(8)
    model.compile(optimizer=make_optimizer("sgd", 5.0, weight_decay=0.0, clipnorm=None, ema=ema),
                  loss="categorical_crossentropy")
    seen = Trained()
    tmp_path.mkdir(parents=True, exist_ok=True)
    best = BestMacroF1(val, targets, ["a", "b"], tmp_path / "model.keras", patience=1 if stop_early else 0,
                       keep_last=keep_last)
    if stop_early:
        best.best_f1, best.best_weights = 2.0, model.get_weights()  # no epoch beats it: one epoch, then stop
    spy = keras.callbacks.LambdaCallback(on_train_batch_end=lambda batch, logs: seen.steps.append(model.get_weights()),
                                         on_epoch_end=lambda epoch, logs: seen.scored.append(model.get_weights()))
    model.fit(train, epochs=3, verbose=0, callbacks=epoch_callbacks(ema, best, spy))
    seen.after, seen.best = model.get_weights(), best
    if (tmp_path / "model.keras").exists():
        seen.saved = keras.saving.load_model(tmp_path / "model.keras").get_weights()
    return seen


def close(first, second) -> bool:
    return all(np.allclose(a, b, atol=1e-4) for a, b in zip(first, second))


def test_ema_scores_and_saves_the_moving_average_while_the_steps_train_the_raw_weights(tmp_path):
    plain, averaged = fitted(tmp_path / "plain", ema=0.0), fitted(tmp_path / "ema", ema=0.5)
    # The steps are those of plain training: the average is swapped out again before each epoch's steps.
    assert len(averaged.steps) == 12 and all(close(a, b) for a, b in zip(averaged.steps, plain.steps))
    # What is scored at each epoch's end is the average by hand: it starts at the first step's
    # weights (as Keras starts it) and takes half of each later step.
    average, expected = averaged.steps[0], []
    for step, weights in enumerate(averaged.steps):
        if step:
            average = [0.5 * a + 0.5 * w for a, w in zip(average, weights)]
        if step % 4 == 3:
            expected.append(average)
    assert all(close(a, b) for a, b in zip(averaged.scored, expected))
    assert not close(averaged.scored[2], averaged.steps[-1])
    assert close(averaged.saved, averaged.best.best_weights) and close(averaged.after, averaged.best.best_weights)
    assert any(close(averaged.saved, scored) for scored in averaged.scored)


def test_a_phase_stopped_early_with_ema_ends_on_its_best_weights_not_on_the_raw_ones(tmp_path):
    # An early stop skips Keras' own end-of-fit copy of the average: the raw weights come back into
    # the model first, and BestMacroF1 must put its best weights over them.
    averaged = fitted(tmp_path, ema=0.5, stop_early=True)
    assert len(averaged.scored) == 1 and close(averaged.after, averaged.best.best_weights)
    assert not close(averaged.after, averaged.steps[-1])


def test_a_final_fit_keeps_and_saves_its_last_epoch_whatever_val_says(tmp_path):
    # A final fit trains on the val photos, so val cannot choose an epoch or stop the run: even
    # against a val score no epoch can beat, all three epochs run and the last one is kept.
    final = fitted(tmp_path, ema=0.0, stop_early=True, keep_last=True)
    assert len(final.scored) == 3 and final.best.best_epoch.endswith("3")
    assert close(final.saved, final.scored[-1]) and close(final.after, final.scored[-1])


def test_the_average_is_swapped_in_before_the_best_checkpoint_scores_it():
    from training.callbacks import BestMacroF1, epoch_callbacks

    best = BestMacroF1(None, [], [], "unused.keras")
    assert epoch_callbacks(0.0, best) == [best]
    swap, first = epoch_callbacks(0.99, best, "progress")[:2]
    assert isinstance(swap, keras.callbacks.SwapEMAWeights) and swap.swap_on_epoch and first is best


def test_ema_is_off_unless_asked_for():
    assert not make_optimizer("adamw", 1e-3, weight_decay=0.0, clipnorm=None).use_ema
    optimizer = make_optimizer("adamw", 1e-3, weight_decay=0.0, clipnorm=None, ema=0.99)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.99
