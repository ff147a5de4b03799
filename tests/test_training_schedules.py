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


def fitted_with_ema(tmp_path, ema: float, early_stop: bool):
    """A softmax layer trained hard (SGD at lr 5) for 3 epochs with the callbacks ``training.fit`` uses;
    returns (weights before, weights at each epoch's scoring, weights after fit, weights saved)."""
    import tensorflow as tf

    from training.callbacks import BestMacroF1

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    images = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    targets = (images[:, 0] > 0).astype(int)
    train = tf.data.Dataset.from_tensor_slices((images, keras.utils.to_categorical(targets, 2))).batch(8)
    val = tf.data.Dataset.from_tensor_slices((images, targets)).batch(8)
    model.compile(optimizer=make_optimizer("sgd", 5.0, weight_decay=0.0, clipnorm=None, ema=ema),
                  loss="categorical_crossentropy")
    before = model.get_weights()
    scored = []
    best = BestMacroF1(val, targets, ["a", "b"], tmp_path / "model.keras", patience=1 if early_stop else 0)
    if early_stop:
        best.best_f1 = 2.0  # no epoch can beat it: the phase stops after its first epoch
        best.best_weights = before
    spy = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: scored.append(model.get_weights()))
    callbacks = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if ema else []
    model.fit(train, epochs=3, verbose=0, callbacks=[*callbacks, best, spy])
    return before, scored, model.get_weights(), best


def close(first, second) -> bool:
    return all(np.allclose(a, b, atol=1e-4) for a, b in zip(first, second))


def test_ema_scores_and_keeps_the_moving_average_not_the_last_steps_weights(tmp_path):
    # A momentum of 0.999999 holds the average where the first step put it (Keras starts it there),
    # so the weights scored and saved at each epoch's end stay put while plain training moves them a lot.
    _, scored, after, _ = fitted_with_ema(tmp_path, ema=0.999999, early_stop=False)
    assert close(scored[0], scored[1]) and close(scored[1], scored[2])
    assert close(keras.saving.load_model(tmp_path / "model.keras").get_weights(), scored[0])
    assert close(after, scored[0])
    (tmp_path / "plain").mkdir()
    _, plain_scored, _, _ = fitted_with_ema(tmp_path / "plain", ema=0.0, early_stop=False)
    assert not close(plain_scored[0], plain_scored[2])


def test_a_phase_stopped_early_with_ema_ends_on_its_best_weights(tmp_path):
    _, scored, after, best = fitted_with_ema(tmp_path, ema=0.999999, early_stop=True)
    assert len(scored) == 1 and close(after, best.best_weights)


def test_ema_is_off_unless_asked_for():
    assert not make_optimizer("adamw", 1e-3, weight_decay=0.0, clipnorm=None).use_ema
    optimizer = make_optimizer("adamw", 1e-3, weight_decay=0.0, clipnorm=None, ema=0.99)
    assert optimizer.use_ema and optimizer.ema_momentum == 0.99
