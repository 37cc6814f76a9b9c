import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses.ddm import DistributionDivergenceLoss, ddm_loss
from tests import harness


def _reference(weak, strong, temperature):
    """Loop-based CLSA DDM: -sum_j softmax(weak/T)_j * log softmax(strong/T)_j per row."""
    losses = []
    for w_row, s_row in zip(weak, strong):
        w = [x / temperature for x in w_row]
        s = [x / temperature for x in s_row]
        w_exp = [np.exp(x - max(w)) for x in w]
        p_weak = [x / sum(w_exp) for x in w_exp]
        s_log_norm = max(s) + np.log(sum(np.exp(x - max(s)) for x in s))
        losses.append(-sum(p * (x - s_log_norm) for p, x in zip(p_weak, s)))
    return np.array(losses)


@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
def test_matches_numpy_reference(temperature):
    rng = np.random.default_rng(0)
    weak, strong = rng.uniform(-1, 1, (6, 9)), rng.uniform(-1, 1, (6, 9))
    actual = ddm_loss(tf.constant(weak), tf.constant(strong), temperature)
    assert actual.shape == (6,)
    np.testing.assert_allclose(actual.numpy(), _reference(weak, strong, temperature), atol=1e-6)


def test_identical_views_give_entropy():
    # With strong == weak the loss is the entropy of p_weak; uniform rows give log(N).
    loss = ddm_loss(np.zeros((2, 5)), np.zeros((2, 5)))
    np.testing.assert_allclose(loss.numpy(), np.log(5.0), atol=1e-6)


def test_large_logits_stay_finite():
    # log(softmax) would underflow to -inf here; log-softmax stays finite.
    weak = np.array([[1.0, -1.0, 0.0]])
    strong = np.array([[-1.0, 1.0, 0.0]])
    loss = ddm_loss(weak, strong, temperature=0.001)
    assert np.isfinite(loss.numpy()).all()
    np.testing.assert_allclose(loss.numpy(), _reference(weak, strong, 0.001), rtol=1e-6)


def test_weak_side_gets_exactly_zero_gradient():
    rng = np.random.default_rng(1)
    weak = tf.Variable(rng.uniform(-1, 1, (4, 7)), dtype=tf.float32)
    strong = tf.Variable(rng.uniform(-1, 1, (4, 7)), dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(ddm_loss(weak, strong))
    grad_weak, grad_strong = tape.gradient(
        loss, [weak, strong], unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    assert np.all(grad_weak.numpy() == 0.0)
    assert np.all(np.isfinite(grad_strong.numpy())) and np.any(grad_strong.numpy() != 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_compute_in_float32(dtype):
    rng = np.random.default_rng(2)
    weak, strong = rng.uniform(-1, 1, (3, 6)), rng.uniform(-1, 1, (3, 6))
    loss = ddm_loss(tf.constant(weak, dtype), tf.constant(strong, dtype))
    assert loss.dtype == tf.float32
    cast = lambda x: tf.cast(tf.constant(x, dtype), tf.float64).numpy()  # noqa: E731
    np.testing.assert_allclose(loss.numpy(), _reference(cast(weak), cast(strong), 0.2), atol=1e-4)


def test_class_reductions_and_round_trip():
    rng = np.random.default_rng(3)
    weak, strong = rng.uniform(-1, 1, (5, 4)), rng.uniform(-1, 1, (5, 4))
    expected = _reference(weak, strong, 0.5)
    np.testing.assert_allclose(
        float(DistributionDivergenceLoss(0.5)(weak, strong)), expected.mean(), atol=1e-6
    )
    np.testing.assert_allclose(
        float(DistributionDivergenceLoss(0.5, reduction="sum")(weak, strong)),
        expected.sum(),
        atol=1e-5,
    )
    harness.assert_config_round_trip(DistributionDivergenceLoss(temperature=0.3))


def test_bad_inputs():
    with pytest.raises(ValueError, match="temperature=0"):
        ddm_loss(np.ones((2, 3)), np.ones((2, 3)), temperature=0.0)
    with pytest.raises(ValueError, match="temperature='a'"):
        DistributionDivergenceLoss(temperature="a")
    with pytest.raises(ValueError, match="strong_similarities.shape"):
        ddm_loss(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="weak_similarities.shape"):
        ddm_loss(np.ones((2,)), np.ones((2,)))
    with pytest.raises(ValueError, match="dtype=int32"):
        ddm_loss(np.ones((2, 3), np.int32), np.ones((2, 3)))
