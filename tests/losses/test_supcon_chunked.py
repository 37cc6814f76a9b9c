"""`supcon_loss(..., chunk_size=k)`: blockwise recomputation gives the same loss and gradients."""

import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses import SupConLoss
from keras_contrast.losses import supcon_loss
from tests import harness
from tests.losses.test_supcon import LABELS
from tests.losses.test_supcon import random_features
from tests.losses.test_supcon import reference_supcon


def loss_and_grad(labels, features, **kwargs):
    x = tf.constant(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        per_sample = supcon_loss(labels, x, **kwargs)
        # Unequal weights per sample, so the upstream gradient of each block matters.
        loss = tf.reduce_sum(per_sample * tf.range(1.0, x.shape[0] + 1.0))
    return per_sample.numpy(), tape.gradient(loss, x).numpy()


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])  # 3 does not divide 8: padded block
@pytest.mark.parametrize("label_kind", ["int", "one_hot", "none"])
@pytest.mark.parametrize("contrast_mode", ["all", "one"])
def test_matches_numpy_reference_and_unchunked(chunk_size, label_kind, contrast_mode):
    features = random_features(8, 3, 5, seed=21)
    labels = {"int": LABELS, "one_hot": np.eye(4)[LABELS], "none": None}[label_kind]
    expected = reference_supcon(labels, features, 0.1, 0.07, contrast_mode)
    kwargs = dict(temperature=0.1, base_temperature=0.07, contrast_mode=contrast_mode)
    loss, grad = loss_and_grad(labels, features, chunk_size=chunk_size, **kwargs)
    np.testing.assert_allclose(loss, expected, atol=1e-5, rtol=1e-5)
    full_loss, full_grad = loss_and_grad(labels, features, **kwargs)
    np.testing.assert_allclose(loss, full_loss, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(grad, full_grad, atol=1e-5, rtol=1e-5)
    assert np.any(grad != 0)


@pytest.mark.parametrize("summation_location", ["outside", "inside"])
@pytest.mark.parametrize("denominator_mode", ["all", "one_positive", "only_negatives"])
@pytest.mark.parametrize("positives_cap", [None, 0, 2])
def test_every_option_matches_reference_and_unchunked(
    summation_location, denominator_mode, positives_cap
):
    features = random_features(8, 2, 4, seed=22)
    kwargs = dict(
        temperature=0.5,
        summation_location=summation_location,
        denominator_mode=denominator_mode,
        positives_cap=positives_cap,
    )
    expected = reference_supcon(LABELS, features, **kwargs)
    loss, grad = loss_and_grad(LABELS, features, chunk_size=3, **kwargs)
    np.testing.assert_allclose(loss, expected, atol=1e-5, rtol=1e-5)
    full_loss, full_grad = loss_and_grad(LABELS, features, **kwargs)
    np.testing.assert_allclose(loss, full_loss, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(grad, full_grad, atol=1e-5, rtol=1e-5)
    assert np.all(np.isfinite(grad))


def test_gradient_matches_finite_differences():
    x0 = random_features(5, 2, 3, seed=23, normalize=False)
    labels = np.array([0, 1, 0, 1, 1])
    x = tf.constant(x0, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(supcon_loss(labels, x, temperature=0.5, chunk_size=2))
    grad = tape.gradient(loss, x).numpy()
    eps = 1e-6
    numeric = np.zeros_like(x0)
    for idx in np.ndindex(*x0.shape):
        plus, minus = x0.copy(), x0.copy()
        plus[idx] += eps
        minus[idx] -= eps
        numeric[idx] = (
            reference_supcon(labels, plus, 0.5).sum() - reference_supcon(labels, minus, 0.5).sum()
        ) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, atol=1e-4)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_function_unknown_batch_and_xla(jit_compile):
    features = random_features(8, 2, 4, seed=24)

    def fn(y, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = supcon_loss(y, x, chunk_size=3)
            total = tf.reduce_sum(loss)
        return loss, tape.gradient(total, x)

    signature = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 2, 4], tf.float32)]
    compiled = tf.function(
        fn, input_signature=None if jit_compile else signature, jit_compile=jit_compile
    )
    loss, grad = compiled(tf.constant(LABELS), tf.constant(features, tf.float32))
    np.testing.assert_allclose(loss.numpy(), reference_supcon(LABELS, features, 0.1), atol=1e-5)
    np.testing.assert_allclose(grad.numpy(), loss_and_grad_sum(LABELS, features), atol=1e-5)


def loss_and_grad_sum(labels, features):
    x = tf.constant(features, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(supcon_loss(labels, x))
    return tape.gradient(loss, x).numpy()


def test_larger_batch_matches_unchunked():
    features = random_features(100, 2, 16, seed=25)
    labels = np.random.default_rng(0).integers(0, 10, size=100)
    loss, grad = loss_and_grad(labels, features, chunk_size=32)
    full_loss, full_grad = loss_and_grad(labels, features)
    np.testing.assert_allclose(loss, full_loss, atol=1e-5, rtol=1e-5)
    # float32 round-off relative to the largest gradient entry (entries sum many terms).
    np.testing.assert_allclose(grad, full_grad, atol=1e-6 * np.abs(full_grad).max())


@pytest.mark.parametrize("labels", [True, False])
def test_mirrored_strategy_equals_one_device(labels):
    rng = np.random.default_rng(26)
    x = rng.normal(size=(8, 2, 5)).astype("float32")
    y = np.array([0, 1, 2, 0, 1, 2, 0, 3], np.int32)
    kernel = rng.normal(size=(5, 6)).astype("float32")

    def encode(var, xs):
        return tf.math.l2_normalize(tf.einsum("bvi,io->bvo", xs, var), axis=-1)

    var = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        expected_loss = supcon_loss(y if labels else None, encode(var, x))
        mean = tf.reduce_mean(expected_loss)
    expected_grad = tape.gradient(mean, var).numpy()

    strategy = harness.mirrored_strategy()
    with strategy.scope():
        dist_var = tf.Variable(kernel)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def step(batch):
        def replica_fn(inputs):
            xs, ys = inputs
            with tf.GradientTape() as tape:
                per_sample = supcon_loss(ys if labels else None, encode(dist_var, xs), chunk_size=3)
                loss = tf.reduce_sum(per_sample) / 8
            return per_sample, tape.gradient(loss, dist_var)

        per_sample, grads = strategy.run(replica_fn, args=(batch,))
        return (
            strategy.experimental_local_results(per_sample),
            strategy.reduce("SUM", grads, axis=None),
        )

    per_replica, grad = step(batch)
    assert len(per_replica) == 2
    np.testing.assert_allclose(
        np.concatenate([p.numpy() for p in per_replica]), expected_loss.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(grad.numpy(), expected_grad, atol=1e-6)


def test_loss_class_stores_chunk_size():
    features = random_features(8, 2, 4, seed=27)
    loss = SupConLoss(temperature=0.2, chunk_size=3)
    clone = harness.assert_config_round_trip(loss, skip=("dtype",))
    assert clone.chunk_size == 3
    np.testing.assert_allclose(
        loss(LABELS, features).numpy(), reference_supcon(LABELS, features, 0.2).mean(), rtol=1e-5
    )


@pytest.mark.parametrize("chunk_size", [0, -2, 1.5, True, "big"])
def test_bad_chunk_size(chunk_size):
    match = f"`chunk_size` must be None, 'auto' or an int >= 1. Received: chunk_size={chunk_size!r}"
    with pytest.raises(ValueError, match=match.replace(".", r"\.")):
        supcon_loss(None, random_features(4, 2, 3), chunk_size=chunk_size)
    with pytest.raises(ValueError, match=r"chunk_size="):
        SupConLoss(chunk_size=chunk_size)


def test_auto_chunks_large_static_batches_only(monkeypatch):
    """The default computes big batches in blocks (0.1.0 held the full logits: 0.54x memory)."""
    from keras_contrast.losses import supcon as supcon_module

    calls = []
    original = supcon_module._chunked_anchor_losses

    def spy(anchor_losses, chunk_size, *args):
        calls.append(chunk_size)
        return original(anchor_losses, chunk_size, *args)

    monkeypatch.setattr(supcon_module, "_chunked_anchor_losses", spy)
    rng = np.random.default_rng(0)
    big = supcon_module.AUTO_CHUNK_THRESHOLD + 8
    features = rng.normal(size=(big, 2, 4)).astype("float32")
    features /= np.linalg.norm(features, axis=-1, keepdims=True)
    labels = rng.integers(0, 10, big)
    auto = supcon_loss(labels, features)
    assert calls == [supcon_module.AUTO_CHUNK_SIZE]
    np.testing.assert_allclose(auto, supcon_loss(labels, features, chunk_size=None), atol=1e-5)
    supcon_loss(labels[:64], features[:64])  # small batch: one block
    assert calls == [supcon_module.AUTO_CHUNK_SIZE]
    assert SupConLoss().chunk_size == "auto"
