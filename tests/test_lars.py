import keras
import numpy as np
import pytest

from keras_contrast.optimizers import LARS
from tests import harness


def _reference(weights, grads_per_step, lrs, momentum, wd, eta, nesterov, decays, adapts):
    """The LARS update of google-research simclr, one variable and one element at a time."""
    weights = [np.array(w, dtype=np.float64) for w in weights]
    velocity = [np.zeros_like(w) for w in weights]
    for grads, lr in zip(grads_per_step, lrs):
        for i, (w, g) in enumerate(zip(weights, grads)):
            g = np.array(g, dtype=np.float64)
            if decays[i]:
                g = g + wd * w
            w_norm = np.sqrt(sum(v * v for v in w.ravel()))
            g_norm = np.sqrt(sum(v * v for v in g.ravel()))
            trust = 1.0
            if adapts[i] and w_norm > 0 and g_norm > 0:
                trust = eta * w_norm / g_norm
            flat_w, flat_g, flat_v = w.ravel(), g.ravel(), velocity[i].ravel()
            for j in range(flat_w.size):
                flat_v[j] = momentum * flat_v[j] + trust * lr * flat_g[j]
                if nesterov:
                    flat_w[j] -= momentum * flat_v[j] + trust * lr * flat_g[j]
                else:
                    flat_w[j] -= flat_v[j]
    return weights


def _variables(rng):
    kernel = keras.Variable(rng.normal(size=(3, 4)).astype("float32"), name="kernel")
    bias = keras.Variable(rng.normal(size=(4,)).astype("float32"), name="bias")
    zero = keras.Variable(np.zeros((2, 2), "float32"), name="zero_kernel")
    return [kernel, bias, zero]


@pytest.mark.parametrize("nesterov", [False, True])
def test_matches_formula(nesterov):
    rng = np.random.default_rng(0)
    variables = _variables(rng)
    initial = [v.numpy().copy() for v in variables]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in variables] for _ in range(3)]
    optimizer = LARS(0.5, momentum=0.9, weight_decay=0.01, trust_coefficient=0.02,
                     nesterov=nesterov)
    for step in grads:
        optimizer.apply_gradients(zip(step, variables))
    expected = _reference(
        initial, grads, [0.5] * 3, 0.9, 0.01, 0.02, nesterov,
        decays=[True, False, True], adapts=[True, False, True],
    )
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_name_patterns_and_schedule():
    rng = np.random.default_rng(1)
    variables = _variables(rng)
    initial = [v.numpy().copy() for v in variables]
    grads = [[rng.normal(size=v.shape).astype("float32") for v in variables] for _ in range(4)]
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=4, warmup_target=1.0, warmup_steps=2
    )
    optimizer = LARS(schedule, momentum=0.5, weight_decay=0.1, trust_coefficient=0.01,
                     exclude_from_weight_decay=["kernel"],
                     exclude_from_layer_adaptation=["bias"])
    for step in grads:
        optimizer.apply_gradients(zip(step, variables))
    lrs = [float(schedule(i)) for i in range(4)]
    assert lrs[0] == 0.0 and lrs[2] == pytest.approx(1.0)
    expected = _reference(
        initial, grads, lrs, 0.5, 0.1, 0.01, False,
        # "kernel" also matches "zero_kernel".
        decays=[False, True, False], adapts=[True, False, True],
    )
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)


def test_trains_a_model_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(2)])
    model.compile(LARS(1.0, weight_decay=1e-4, trust_coefficient=0.01),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, epochs=5, batch_size=32, verbose=0).history["loss"]
    assert history[-1] < history[0]
    harness.assert_config_round_trip(LARS(0.1, exclude_from_weight_decay=["bias"]))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert isinstance(restored.optimizer, LARS)
    assert restored.optimizer.weight_decay == 1e-4


def test_bad_arguments():
    with pytest.raises(ValueError, match="momentum"):
        LARS(momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay"):
        LARS(weight_decay=-1.0)
    with pytest.raises(ValueError, match="trust_coefficient"):
        LARS(trust_coefficient=0.0)
    with pytest.raises(ValueError, match="exclude_from_weight_decay"):
        LARS(exclude_from_weight_decay="bias")
