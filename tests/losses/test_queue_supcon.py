import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses import queue_supcon_loss


def _reference(labels, anchors, key_labels, keys, temperature, base_temperature=None):
    """Loop-based L_out of SupCon against labelled keys (batch keys + queue)."""
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    out = []
    for i in range(len(anchors)):
        logits = [float(anchors[i] @ keys[j]) / temperature for j in range(len(keys))]
        m = max(logits)
        log_denominator = m + np.log(sum(np.exp(l - m) for l in logits))
        positives = [j for j in range(len(keys)) if key_labels[j] == labels[i]]
        if not positives:
            out.append(0.0)
            continue
        out.append(-scale * sum(logits[p] - log_denominator for p in positives) / len(positives))
    return np.array(out)


def _unit(rng, shape):
    x = rng.normal(size=shape)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("base_temperature", [None, 0.07])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matches_loop_reference(base_temperature, dtype):
    rng = np.random.default_rng(0)
    anchors, keys = _unit(rng, (6, 5)), _unit(rng, (14, 5))
    labels = rng.integers(0, 3, 6)
    key_labels = np.concatenate([labels, rng.integers(-1, 3, 8)])  # batch keys, then queue
    got = queue_supcon_loss(
        labels, anchors.astype(dtype), key_labels, keys.astype(dtype), 0.1, base_temperature
    )
    expected = _reference(labels, anchors, key_labels, keys, 0.1, base_temperature)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12 if dtype == "float64" else 1e-5)


def test_anchor_without_positive_gives_zero_and_finite_gradient():
    rng = np.random.default_rng(1)
    anchors = tf.constant(_unit(rng, (3, 4)))
    keys = tf.constant(_unit(rng, (5, 4)))
    labels = tf.constant([0, 1, 7])
    key_labels = tf.constant([0, 1, 1, -1, -1])  # nobody has label 7; -1 is nobody's
    with tf.GradientTape() as tape:
        tape.watch(anchors)
        loss = queue_supcon_loss(labels, anchors, key_labels, keys)
    assert loss.numpy()[2] == 0.0
    np.testing.assert_allclose(
        loss.numpy(), _reference(labels.numpy(), anchors.numpy(), key_labels.numpy(),
                                 keys.numpy(), 0.1), rtol=1e-10
    )
    assert np.all(np.isfinite(tape.gradient(loss, anchors).numpy()))


def test_unlabelled_queue_slots_are_negatives_only():
    anchors = tf.constant([[1.0, 0.0]])
    keys = tf.constant([[1.0, 0.0], [1.0, 0.0]])
    # The second key equals the anchor but carries -1: it only enlarges the denominator.
    with_negative = queue_supcon_loss([0], anchors, [0, -1], keys).numpy()[0]
    np.testing.assert_allclose(with_negative, np.log(2.0), rtol=1e-6)


def test_errors():
    a = tf.ones([2, 3])
    with pytest.raises(ValueError, match="temperature"):
        queue_supcon_loss([0, 1], a, [0], tf.ones([1, 3]), temperature=0.0)
    with pytest.raises(ValueError, match="labels.dtype=float32"):
        queue_supcon_loss(tf.constant([0.0, 1.0]), a, [0], tf.ones([1, 3]))
    with pytest.raises(ValueError, match="anchors"):
        queue_supcon_loss([0, 1], tf.ones([2, 3, 1]), [0], tf.ones([1, 3]))
