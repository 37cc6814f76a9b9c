import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses import BYOLLoss, byol_loss


def _reference(targets, predictions):
    out = []
    for z, p in zip(targets, predictions):
        z = z / np.sqrt(sum(v * v for v in z))
        p = p / np.sqrt(sum(v * v for v in p))
        out.append(sum((a - b) ** 2 for a, b in zip(p, z)))
    return np.array(out)


def test_matches_loop_reference():
    rng = np.random.default_rng(0)
    z, p = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    np.testing.assert_allclose(byol_loss(z, p).numpy(), _reference(z, p), rtol=1e-12)
    np.testing.assert_allclose(
        float(BYOLLoss()(z.astype("float32"), p.astype("float32"))),
        _reference(z, p).mean(), rtol=1e-5,
    )
    np.testing.assert_allclose(byol_loss(z, 3.0 * z).numpy(), 0.0, atol=1e-12)
    np.testing.assert_allclose(byol_loss(z, -z).numpy(), 4.0, rtol=1e-12)


def test_targets_get_no_gradient():
    z = tf.Variable(tf.random.normal([4, 3]))
    p = tf.Variable(tf.random.normal([4, 3]))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(byol_loss(z, p))
    grad_z, grad_p = tape.gradient(loss, [z, p])
    assert grad_z is None
    assert np.any(grad_p.numpy() != 0)


def test_half_precision_inputs_compute_in_float32():
    z = tf.random.normal([4, 3], dtype="float16")
    assert byol_loss(z, z).dtype == tf.float32


def test_errors():
    with pytest.raises(ValueError, match="same shape"):
        byol_loss(tf.ones([2, 3]), tf.ones([2, 4]))
    with pytest.raises(ValueError, match="targets"):
        byol_loss(tf.ones([2]), tf.ones([2]))
    assert keras.losses.get(keras.saving.serialize_keras_object(BYOLLoss())).name == "byol_loss"
