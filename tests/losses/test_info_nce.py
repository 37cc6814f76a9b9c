import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses.info_nce import InfoNCELoss, info_nce_loss
from tests import harness


def _reference(query, key, negatives, temperature):
    """Loop-based InfoNCE: -log(exp(q.k+/T) / sum over [k+, negatives] of exp(q.n/T))."""
    losses = []
    for i in range(len(query)):
        if negatives is None:
            candidates = list(key)
            positive = i
        else:
            candidates = [key[i]] + list(negatives)
            positive = 0
        logits = [float(np.dot(query[i], c)) / temperature for c in candidates]
        top = max(logits)
        log_denominator = top + np.log(sum(np.exp(l - top) for l in logits))
        losses.append(log_denominator - logits[positive])
    return np.array(losses)


def _normalised(rng, *shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("with_negatives", [True, False])
@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_matches_numpy_reference(with_negatives, temperature):
    rng = np.random.default_rng(0)
    q, k = _normalised(rng, 6, 5), _normalised(rng, 6, 5)
    negatives = _normalised(rng, 11, 5) if with_negatives else None
    expected = _reference(q, k, negatives, temperature)
    actual = info_nce_loss(
        tf.constant(q, tf.float64),
        tf.constant(k, tf.float64),
        None if negatives is None else tf.constant(negatives, tf.float64),
        temperature,
    )
    assert actual.shape == (6,)
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6, rtol=0)


def test_closed_form_identical_keys():
    # q.k+ equals q.n for every negative: loss = log(1 + K).
    q = np.ones((3, 4)) / 2.0
    negatives = np.tile(q[:1], (7, 1))
    loss = info_nce_loss(q, q, negatives, temperature=0.5)
    np.testing.assert_allclose(loss.numpy(), np.log(8.0), atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_compute_in_float32(dtype):
    rng = np.random.default_rng(1)
    q, k, n = _normalised(rng, 4, 8), _normalised(rng, 4, 8), _normalised(rng, 9, 8)
    loss = info_nce_loss(tf.constant(q, dtype), tf.constant(k, dtype), tf.constant(n, dtype))
    assert loss.dtype == tf.float32
    cast = lambda x: tf.cast(tf.constant(x, dtype), tf.float64).numpy()  # noqa: E731
    np.testing.assert_allclose(loss.numpy(), _reference(cast(q), cast(k), cast(n), 0.2), atol=1e-4)


def test_gradients_finite():
    rng = np.random.default_rng(2)
    q = tf.Variable(_normalised(rng, 4, 8), dtype=tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(info_nce_loss(q, tf.constant(_normalised(rng, 4, 8), tf.float32)))
    grad = tape.gradient(loss, q)
    assert np.all(np.isfinite(grad.numpy())) and np.any(grad.numpy() != 0)


def test_class_matches_function_and_round_trips():
    rng = np.random.default_rng(3)
    features = _normalised(rng, 5, 2, 6)
    loss = InfoNCELoss(temperature=0.3)
    expected = _reference(features[:, 0], features[:, 1], None, 0.3).mean()
    np.testing.assert_allclose(float(loss(np.zeros(5), features)), expected, atol=1e-6)
    per_sample = InfoNCELoss(temperature=0.3, reduction=None)(np.zeros(5), features)
    assert per_sample.shape == (5,)
    harness.assert_config_round_trip(loss)


def test_bad_inputs():
    with pytest.raises(ValueError, match="temperature=0"):
        info_nce_loss(np.ones((2, 3)), np.ones((2, 3)), temperature=0)
    with pytest.raises(ValueError, match="temperature=-1"):
        InfoNCELoss(temperature=-1)
    with pytest.raises(ValueError, match="positive_key.shape"):
        info_nce_loss(np.ones((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="query.shape"):
        info_nce_loss(np.ones((2, 3, 1)), np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="negatives.shape"):
        info_nce_loss(np.ones((2, 3)), np.ones((2, 3)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="y_pred.shape"):
        InfoNCELoss()(np.zeros(2), np.ones((2, 3, 4)))
