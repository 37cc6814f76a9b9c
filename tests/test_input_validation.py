"""Bad inputs that 0.1.0 accepted and turned into NaN, garbage or silent mistakes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrast as kc
from keras_contrast import layers as L


@pytest.mark.parametrize("alpha", [float("nan"), float("inf"), -1.0, True])
def test_mixco_mixing_rejects_non_finite_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        L.MixCoMixing(alpha=alpha)


@pytest.mark.parametrize("shape", [(8, 5), (8, 4, 4), (4, 4, 4, 3, 1)])
def test_mixco_mixing_needs_a_batch_of_images(shape):
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        L.MixCoMixing(seed=0)(np.zeros(shape, "float32"))


@pytest.mark.parametrize("value_range", [(0, float("inf")), (float("nan"), 255), (0, True)])
def test_strong_augment_rejects_non_finite_value_range(value_range):
    with pytest.raises(ValueError, match="value_range"):
        L.StrongAugment(value_range=value_range)


@pytest.mark.parametrize("sigma_range", [(0.1, float("inf")), (float("nan"), 2.0)])
def test_blur_rejects_non_finite_sigma(sigma_range):
    with pytest.raises(ValueError, match="sigma_range"):
        L.PerImageGaussianBlur(sigma_range)


@pytest.mark.parametrize("bad_label", [12, -1])
def test_imclr_pairing_rejects_out_of_range_labels(bad_label):
    pair = L.ImCLRPairing(num_classes=4, seed=0)
    images = np.zeros((4, 2, 2, 3), "float32")
    labels = np.array([0, 1, 2, bad_label])
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class ids in \[0, 4\)"):
        pair({"images": images, "labels": labels})
    # ... and inside tf.data, where 0.1.0 produced rows summing to 0.5.
    ds = tf.data.Dataset.from_tensors({"images": images, "labels": labels}).map(pair)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"class ids in \[0, 4\)"):
        next(iter(ds))


def test_supcon_rejects_soft_labels():
    features = tf.math.l2_normalize(tf.random.normal([4, 2, 3]), -1)
    smoothed = 0.9 * tf.one_hot([0, 1, 2, 0], 3) + 0.1 / 3
    with pytest.raises(ValueError, match="one-hot or multi-hot"):
        kc.losses.SupConLoss()(smoothed, features)

    @tf.function
    def in_graph(labels):
        return kc.losses.supcon_loss(labels, features)

    with pytest.raises(tf.errors.InvalidArgumentError, match="one-hot or multi-hot"):
        in_graph(smoothed)
    # One-hot and multi-hot labels still work.
    assert np.all(np.isfinite(in_graph(tf.one_hot([0, 1, 2, 0], 3)).numpy()))


def test_mixco_targets_reject_weights_outside_unit_interval_in_graph():
    @tf.function
    def targets(lam):
        return kc.losses.mixco_targets(lam, 8)

    for lam in ([1.5, 0.2], [float("nan"), 0.2], [-0.1, 0.2]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"must lie in \[0, 1\]"):
            targets(tf.constant(lam))
    np.testing.assert_allclose(np.sum(targets(tf.constant([0.3, 1.0])), axis=1), 1.0)
