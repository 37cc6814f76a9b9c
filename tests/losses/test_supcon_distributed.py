"""SupCon under MirroredStrategy over 2 logical CPUs equals one device on the global batch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses import SupConLoss
from keras_contrast.losses import supcon_loss
from tests import harness

GLOBAL_BATCH = 8


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(GLOBAL_BATCH, 2, 5)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0, 3], np.int32)
    kernel = rng.normal(size=(5, 6)).astype("float32")
    return x, y, kernel


def encode(kernel, x):
    return tf.math.l2_normalize(tf.einsum("bvi,io->bvo", x, kernel), axis=-1)


def one_device(x, y, kernel, gather=True):
    kernel = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        per_sample = supcon_loss(y, encode(kernel, x), gather_across_replicas=gather)
        loss = tf.reduce_mean(per_sample)
    return per_sample.numpy(), tape.gradient(loss, kernel).numpy()


def mirrored(x, y, kernel, gather=True, labels=True):
    strategy = harness.mirrored_strategy()
    with strategy.scope():
        var = tf.Variable(kernel)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(batch):
        def replica_fn(inputs):
            xs, ys = inputs
            with tf.GradientTape() as tape:
                per_sample = supcon_loss(
                    ys if labels else None, encode(var, xs), gather_across_replicas=gather
                )
                # Scale like Keras does: local sum over the global batch size.
                loss = tf.reduce_sum(per_sample) / GLOBAL_BATCH
            return per_sample, tape.gradient(loss, var)

        per_sample, grads = strategy.run(replica_fn, args=(batch,))
        return (
            strategy.experimental_local_results(per_sample),
            strategy.reduce("SUM", grads, axis=None),
        )

    per_replica, grad = step(batch)
    assert len(per_replica) == 2
    return np.concatenate([p.numpy() for p in per_replica]), grad.numpy()


@pytest.mark.parametrize("labels", [True, False])
def test_custom_step_loss_and_gradients_equal_one_device(labels):
    x, y, kernel = make_data()
    expected_loss, expected_grad = one_device(x, y if labels else None, kernel)
    loss, grad = mirrored(x, y, kernel, labels=labels)
    np.testing.assert_allclose(loss, expected_loss, atol=1e-6)
    np.testing.assert_allclose(grad, expected_grad, atol=1e-6)


def test_without_gather_differs_so_gather_really_happens():
    x, y, kernel = make_data()
    expected_loss, expected_grad = one_device(x, y, kernel)
    local_loss, local_grad = mirrored(x, y, kernel, gather=False)
    assert np.max(np.abs(local_loss - expected_loss)) > 1e-2
    assert np.max(np.abs(local_grad - expected_grad)) > 1e-3
    # ... and equals contrasting each half on its own.
    halves = [one_device(x[s], y[s], kernel)[0] for s in (slice(0, 4), slice(4, 8))]
    np.testing.assert_allclose(local_loss, np.concatenate(halves), atol=1e-6)


def test_uneven_last_batch():
    """MirroredStrategy splits a batch of 5 as 3 + 2: offsets still line up."""
    x, y, kernel = make_data()
    x, y = x[:5], y[:5]
    expected_loss, _ = one_device(x, y, kernel)
    strategy = harness.mirrored_strategy()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(5)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))
    fn = tf.function(
        lambda b: strategy.run(lambda xs, ys: supcon_loss(ys, encode(kernel, xs)), args=b)
    )
    per_replica = strategy.experimental_local_results(fn(batch))
    assert [int(p.shape[0]) for p in per_replica] == [3, 2]
    np.testing.assert_allclose(np.concatenate(per_replica), expected_loss, atol=1e-6)


def build_model(kernel):
    inputs = keras.Input([2, 5])
    x = keras.layers.Dense(6, use_bias=False)(inputs)
    outputs = keras.layers.UnitNormalization(axis=-1)(x)
    model = keras.Model(inputs, outputs)
    model.layers[1].kernel.assign(kernel)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=SupConLoss())
    return model


def test_model_fit_equals_one_device():
    x, y, kernel = make_data()
    single = build_model(kernel)
    single_loss = single.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)
    strategy = harness.mirrored_strategy()
    with strategy.scope():
        dist = build_model(kernel)
    dist_loss = dist.fit(x, y, batch_size=GLOBAL_BATCH, epochs=1, shuffle=False, verbose=0)

    expected_loss, expected_grad = one_device(x, y, kernel)
    np.testing.assert_allclose(single_loss.history["loss"][0], expected_loss.mean(), rtol=1e-5)
    np.testing.assert_allclose(dist_loss.history["loss"][0], expected_loss.mean(), rtol=1e-5)
    # One SGD step with learning rate 1: new kernel = kernel - gradient.
    np.testing.assert_allclose(single.layers[1].kernel.numpy(), kernel - expected_grad, atol=1e-5)
    np.testing.assert_allclose(dist.layers[1].kernel.numpy(), kernel - expected_grad, atol=1e-5)
