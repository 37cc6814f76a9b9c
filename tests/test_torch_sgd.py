import keras
import numpy as np
import pytest

from keras_contrast.optimizers import TorchSGD
from tests import harness


def _reference(weights, grads_per_step, lrs, momentum, wd, nesterov, decays):
    """torch.optim.SGD's update (documented pseudo-code), one element at a time."""
    weights = [np.array(w, dtype=np.float64) for w in weights]
    buffers = [None] * len(weights)
    for grads, lr in zip(grads_per_step, lrs):
        for i, (w, g) in enumerate(zip(weights, grads)):
            flat_w = w.ravel()
            g = np.array(g, dtype=np.float64).ravel()
            if buffers[i] is None:
                buffers[i] = np.zeros_like(flat_w)
            for j in range(flat_w.size):
                d = g[j] + (wd * flat_w[j] if decays[i] else 0.0)
                if momentum:
                    # torch: b = d on the first step, then b = m b + d (dampening 0).
                    buffers[i][j] = momentum * buffers[i][j] + d
                    d = d + momentum * buffers[i][j] if nesterov else buffers[i][j]
                flat_w[j] -= lr * d
    return weights


@pytest.mark.parametrize("nesterov, momentum", [(False, 0.0), (False, 0.9), (True, 0.9)])
def test_matches_torch_update_under_a_schedule(nesterov, momentum):
    rng = np.random.default_rng(0)
    kernel = keras.Variable(rng.normal(size=(3, 4)).astype("float32"), name="kernel")
    bias = keras.Variable(rng.normal(size=(4,)).astype("float32"), name="bias")
    initial = [kernel.numpy(), bias.numpy()]
    schedule = keras.optimizers.schedules.CosineDecay(0.5, decay_steps=5)
    optimizer = TorchSGD(
        schedule, momentum=momentum, weight_decay=0.05, nesterov=nesterov,
        exclude_from_weight_decay=["bias"],
    )
    grads = [[rng.normal(size=(3, 4)), rng.normal(size=(4,))] for _ in range(5)]
    lrs = [float(schedule(step)) for step in range(5)]
    for g in grads:
        optimizer.apply_gradients(
            [(keras.ops.convert_to_tensor(x, "float32"), v) for x, v in zip(g, [kernel, bias])]
        )
    expected = _reference(initial, grads, lrs, momentum, 0.05, nesterov, [True, False])
    np.testing.assert_allclose(kernel.numpy(), expected[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), expected[1], rtol=1e-5, atol=1e-6)


def test_coupled_decay_is_stronger_than_keras_decoupled_decay():
    """With zero gradients only the decay moves the weights: torch's compounds in the buffer."""
    def shrink(optimizer):
        w = keras.Variable(np.ones((2,), "float32"))
        for _ in range(20):
            optimizer.apply_gradients([(keras.ops.zeros((2,)), w)])
        return 1.0 - float(w.numpy()[0])

    torch_like = shrink(TorchSGD(0.1, momentum=0.9, weight_decay=1e-2))
    keras_sgd = shrink(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=1e-2))
    assert torch_like > 5 * keras_sgd


def test_config_round_trip_and_fit():
    optimizer = TorchSGD(0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    restored = TorchSGD.from_config(optimizer.get_config())
    assert restored.weight_decay == 1e-4 and restored.nesterov
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    history = model.fit(x, x[:, :2], epochs=3, verbose=0).history
    assert history["loss"][-1] < history["loss"][0]


def test_mirrored_strategy_matches_one_device():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 3)).astype("float32")
    y = rng.normal(size=(8, 2)).astype("float32")

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
            model.compile(optimizer=TorchSGD(0.1, momentum=0.9, weight_decay=1e-2), loss="mse")
        model.fit(x, y, batch_size=8, epochs=2, verbose=0, shuffle=False)
        return model.get_weights()

    import tensorflow as tf

    for a, b in zip(run(tf.distribute.get_strategy()), run(harness.mirrored_strategy())):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="momentum=1.0"):
        TorchSGD(momentum=1.0)
    with pytest.raises(ValueError, match="weight_decay=-1"):
        TorchSGD(weight_decay=-1)
    with pytest.raises(ValueError, match="weight_decay=nan"):
        TorchSGD(weight_decay=float("nan"))
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        TorchSGD(momentum=0.0, nesterov=True)
    with pytest.raises(ValueError, match="exclude_from_weight_decay='bias'"):
        TorchSGD(exclude_from_weight_decay="bias")
