import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses.mixco import MixCoLoss, mixco_loss, mixco_targets
from tests import harness


def _reference_targets(lam, num_keys):
    half = len(lam)
    targets = np.zeros((half, num_keys))
    for i in range(half):
        targets[i, i] = lam[i]
        targets[i, i + half] = 1.0 - lam[i]
    return targets


def _reference_loss(targets, logits, temperature):
    """Loop-based soft cross-entropy: -sum_j t_ij * log softmax(z_i / T)_j."""
    losses = []
    for t_row, z_row in zip(targets, logits):
        z = [x / temperature for x in z_row]
        log_norm = max(z) + np.log(sum(np.exp(x - max(z)) for x in z))
        losses.append(-sum(t * (x - log_norm) for t, x in zip(t_row, z)))
    return np.array(losses)


def test_targets_match_reference():
    lam = np.array([0.1, 0.5, 0.95])
    actual = mixco_targets(tf.constant(lam.reshape(3, 1, 1, 1)), num_keys=10)
    np.testing.assert_allclose(actual.numpy(), _reference_targets(lam, 10), atol=1e-7)
    np.testing.assert_allclose(actual.numpy().sum(axis=1), 1.0, atol=1e-6)


def test_targets_inside_tf_function_with_unknown_batch():
    fn = tf.function(lambda lam: mixco_targets(lam, 8), input_signature=[tf.TensorSpec([None])])
    lam = np.array([0.25, 0.75])
    np.testing.assert_allclose(fn(lam).numpy(), _reference_targets(lam, 8), atol=1e-7)


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_loss_matches_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    lam = rng.uniform(size=4)
    targets = _reference_targets(lam, 8 + 5)
    logits = rng.uniform(-1, 1, (4, 13))
    actual = mixco_loss(tf.constant(targets), tf.constant(logits), temperature)
    assert actual.shape == (4,)
    np.testing.assert_allclose(
        actual.numpy(), _reference_loss(targets, logits, temperature), atol=1e-6
    )


def test_hard_targets_reduce_to_cross_entropy():
    logits = np.array([[0.3, -0.2, 0.9, 0.1]])
    targets = mixco_targets(np.array([1.0]), 4)
    z = logits / 0.5
    expected = -(z[0, 0] - np.log(np.exp(z).sum()))
    np.testing.assert_allclose(mixco_loss(targets, logits, 0.5).numpy(), [expected], atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_compute_in_float32(dtype):
    rng = np.random.default_rng(1)
    targets = _reference_targets(np.array([0.5, 0.25]), 6)
    logits = rng.uniform(-1, 1, (2, 6))
    loss = mixco_loss(tf.constant(targets, dtype), tf.constant(logits, dtype), 0.5)
    assert loss.dtype == tf.float32
    cast = lambda x: tf.cast(tf.constant(x, dtype), tf.float64).numpy()  # noqa: E731
    np.testing.assert_allclose(
        loss.numpy(), _reference_loss(cast(targets), cast(logits), 0.5), atol=1e-3
    )


def test_gradients_finite_and_targets_not_differentiated():
    rng = np.random.default_rng(2)
    logits = tf.Variable(rng.uniform(-1, 1, (3, 8)), dtype=tf.float32)
    targets = tf.Variable(_reference_targets(np.array([0.2, 0.4, 0.6]), 8), dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(mixco_loss(targets, logits))
    g_logits, g_targets = tape.gradient(
        loss, [logits, targets], unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    assert np.all(np.isfinite(g_logits.numpy())) and np.any(g_logits.numpy() != 0)
    assert np.all(g_targets.numpy() == 0)


def test_class_and_round_trip():
    rng = np.random.default_rng(3)
    targets = _reference_targets(rng.uniform(size=3), 7)
    logits = rng.uniform(-1, 1, (3, 7))
    np.testing.assert_allclose(
        float(MixCoLoss(0.1)(targets, logits)), _reference_loss(targets, logits, 0.1).mean(),
        atol=1e-6,
    )
    harness.assert_config_round_trip(MixCoLoss(temperature=0.07))


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_keys=5"):
        mixco_targets(np.array([0.5, 0.5, 0.5]), num_keys=5)
    with pytest.raises(ValueError, match="num_keys=2.5"):
        mixco_targets(np.array([0.5]), num_keys=2.5)
    with pytest.raises(ValueError, match="mix_weights"):
        mixco_targets(np.array([1.5]), num_keys=2)
    with pytest.raises(ValueError, match="row sums"):
        mixco_loss(np.full((2, 4), 0.5), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="mixed_logits.shape"):
        mixco_loss(np.eye(2), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="temperature=-0.1"):
        MixCoLoss(temperature=-0.1)
