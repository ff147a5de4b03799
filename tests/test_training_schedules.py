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
