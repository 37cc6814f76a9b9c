import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses import SupConLoss
from keras_contrast.losses import supcon_loss
from tests import harness


def reference_supcon(
    labels,
    features,
    temperature,
    base_temperature=None,
    contrast_mode="all",
    summation_location="outside",
    denominator_mode="all",
    positives_cap=None,
):
    """Eq. 2 / eq. 3 of Khosla et al. with plain Python loops, in float64."""
    features = np.asarray(features, np.float64)
    batch, views = features.shape[:2]
    features = features.reshape(batch, views, -1)
    if labels is None:
        same = [[i == j for j in range(batch)] for i in range(batch)]
    else:
        labels = np.asarray(labels)
        if labels.ndim == 2 and labels.shape[1] > 1:
            same = [[float(labels[i] @ labels[j]) > 0 for j in range(batch)] for i in range(batch)]
        else:
            ids = labels.reshape(-1)
            same = [[ids[i] == ids[j] for j in range(batch)] for i in range(batch)]
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    anchor_views = range(views) if contrast_mode == "all" else [0]
    losses = []
    for i in range(batch):
        kept_others = [j for j in range(batch) if j != i and same[i][j]]
        if positives_cap is not None:
            kept_others = kept_others[: positives_cap // views]
        per_view = []
        for a in anchor_views:
            positives, negatives = [], []
            for v in range(views):
                for j in range(batch):
                    if (j, v) == (i, a):
                        continue
                    logit = sum(features[i, a, d] * features[j, v, d]
                                for d in range(features.shape[2])) / temperature
                    if j == i or j in kept_others:
                        positives.append(logit)
                    elif not same[i][j]:
                        negatives.append(logit)
            neg_sum = sum(math.exp(n) for n in negatives)
            if not positives or (denominator_mode == "only_negatives" and not negatives):
                per_view.append(0.0)
                continue
            probs = []
            for p in positives:
                if denominator_mode == "all":
                    denominator = neg_sum + sum(math.exp(q) for q in positives)
                elif denominator_mode == "one_positive":
                    denominator = neg_sum + math.exp(p)
                else:
                    denominator = neg_sum
                probs.append(math.exp(p) / denominator)
            if summation_location == "outside":
                value = sum(math.log(q) for q in probs) / len(probs)
            else:
                value = math.log(sum(probs) / len(probs))
            per_view.append(-scale * value)
        losses.append(sum(per_view) / len(per_view))
    return np.array(losses)


def random_features(batch, views, dim, seed=0, normalize=True):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, views, dim))
    if normalize:
        features /= np.linalg.norm(features, axis=-1, keepdims=True)
    return features


LABELS = np.array([0, 1, 0, 2, 1, 0, 3, 2])  # class 3 has a single sample


@pytest.mark.parametrize("contrast_mode", ["all", "one"])
@pytest.mark.parametrize("label_kind", ["int", "int_column", "one_hot", "none"])
@pytest.mark.parametrize("base_temperature", [None, 0.07])
def test_matches_numpy_reference(contrast_mode, label_kind, base_temperature):
    features = random_features(8, 3, 5, seed=1)
    labels = {
        "int": LABELS,
        "int_column": LABELS[:, None],
        "one_hot": np.eye(4)[LABELS],
        "none": None,
    }[label_kind]
    expected = reference_supcon(labels, features, 0.1, base_temperature, contrast_mode)
    # float64 features are computed in float64: agreement to 1e-6 with the reference.
    actual = supcon_loss(
        labels, tf.constant(features, tf.float64), 0.1, base_temperature, contrast_mode
    )
    assert actual.dtype == tf.float64
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6, rtol=0)
    # float32 features: float32 round-off on logits of magnitude 1 / T = 10.
    actual32 = supcon_loss(
        labels, tf.constant(features, tf.float32), 0.1, base_temperature, contrast_mode
    )
    assert actual32.dtype == tf.float32
    np.testing.assert_allclose(actual32.numpy(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("summation_location", ["outside", "inside"])
@pytest.mark.parametrize("denominator_mode", ["all", "one_positive", "only_negatives"])
@pytest.mark.parametrize("positives_cap", [None, 0, 2])
def test_reference_options(summation_location, denominator_mode, positives_cap):
    features = random_features(8, 2, 4, seed=2)
    kwargs = dict(
        summation_location=summation_location,
        denominator_mode=denominator_mode,
        positives_cap=positives_cap,
    )
    expected = reference_supcon(LABELS, features, 0.5, **kwargs)
    actual = supcon_loss(LABELS, tf.constant(features, tf.float64), 0.5, **kwargs)
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-6, rtol=0)


def test_float32_deviation_below_1e6_on_moderate_logits():
    """float32 features agree with the float64 reference to 1e-6 when logits are O(1)."""
    features = random_features(16, 2, 8, seed=3)
    labels = np.arange(16) % 5
    expected = reference_supcon(labels, features, 1.0)
    actual = supcon_loss(labels, features.astype("float32"), temperature=1.0)
    assert actual.dtype == tf.float32
    assert np.max(np.abs(actual.numpy() - expected)) < 1e-6


def test_higher_rank_features_are_flattened():
    features = random_features(6, 2, 12, seed=4)
    expected = reference_supcon(LABELS[:6], features, 0.2)
    actual = supcon_loss(LABELS[:6], features.reshape(6, 2, 3, 4), temperature=0.2)
    np.testing.assert_allclose(actual.numpy(), expected, atol=1e-5)


def test_single_view_anchor_without_positive_is_zero_not_nan():
    features = random_features(8, 1, 4, seed=5)
    actual = supcon_loss(LABELS, features, temperature=0.1).numpy()
    expected = reference_supcon(LABELS, features, 0.1)
    assert np.all(np.isfinite(actual))
    assert actual[6] == 0.0  # the only sample of class 3
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_only_negatives_without_negatives_is_zero_not_nan():
    features = random_features(4, 2, 4, seed=6)
    labels = np.zeros(4, np.int32)
    with tf.GradientTape() as tape:
        x = tf.constant(features, tf.float32)
        tape.watch(x)
        loss = supcon_loss(labels, x, denominator_mode="only_negatives")
    np.testing.assert_array_equal(loss.numpy(), np.zeros(4))
    assert np.all(np.isfinite(tape.gradient(loss, x).numpy()))


def test_identical_features_closed_form():
    # All 2N views identical: every logit equals 1/T, so each anchor's probability for any
    # positive is 1 / (2N - 1), whatever the labels.
    n = 6
    features = np.ones((n, 2, 3)) / np.sqrt(3.0)
    for labels in (None, np.arange(n) % 2, np.zeros(n)):
        loss = supcon_loss(labels, features, temperature=0.3).numpy()
        np.testing.assert_allclose(loss, np.full(n, np.log(2 * n - 1)), rtol=1e-6)


def test_simclr_two_views_closed_form():
    # Two orthonormal views per sample, both views of a sample equal: logits are 1/T with the
    # positive and 0 with the 2N-2 negatives.
    n, t = 4, 0.5
    base = np.eye(n)
    features = np.stack([base, base], axis=1)
    expected = -np.log(np.exp(1 / t) / (np.exp(1 / t) + 2 * n - 2))
    loss = supcon_loss(None, features, temperature=t).numpy()
    np.testing.assert_allclose(loss, np.full(n, expected), rtol=1e-6)


def test_scale_by_base_temperature():
    features = random_features(8, 2, 4, seed=7)
    plain = supcon_loss(LABELS, features, temperature=0.1).numpy()
    scaled = supcon_loss(LABELS, features, temperature=0.1, base_temperature=0.07).numpy()
    np.testing.assert_allclose(scaled, plain * 0.1 / 0.07, rtol=1e-6)


def test_invariant_to_batch_permutation():
    features = random_features(8, 2, 4, seed=8)
    perm = np.random.default_rng(0).permutation(8)
    loss = supcon_loss(LABELS, features).numpy()
    permuted = supcon_loss(LABELS[perm], features[perm]).numpy()
    np.testing.assert_allclose(permuted, loss[perm], rtol=1e-5)


@pytest.mark.parametrize("labels", [LABELS, None])
@pytest.mark.parametrize("contrast_mode", ["all", "one"])
@pytest.mark.parametrize("denominator_mode", ["all", "one_positive", "only_negatives"])
@pytest.mark.parametrize("summation_location", ["outside", "inside"])
def test_gradients_finite(labels, contrast_mode, denominator_mode, summation_location):
    x = tf.constant(random_features(8, 2, 4, seed=9), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_mean(
            supcon_loss(
                labels,
                x,
                contrast_mode=contrast_mode,
                denominator_mode=denominator_mode,
                summation_location=summation_location,
            )
        )
    grad = tape.gradient(loss, x).numpy()
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_gradient_matches_finite_differences():
    x0 = random_features(4, 2, 3, seed=10, normalize=False)
    labels = np.array([0, 1, 0, 1])
    x = tf.constant(x0, tf.float64)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(supcon_loss(labels, x, temperature=0.5))
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


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_inputs_computed_in_float32(dtype):
    features = random_features(8, 2, 16, seed=11)
    low = tf.cast(tf.constant(features, tf.float32), dtype)
    expected = reference_supcon(LABELS, tf.cast(low, tf.float32).numpy(), 0.1)
    with tf.GradientTape() as tape:
        tape.watch(low)
        loss = supcon_loss(LABELS, low)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss.numpy(), expected, atol=1e-4)
    grad = tape.gradient(loss, low)
    assert grad.dtype == low.dtype
    assert np.all(np.isfinite(tf.cast(grad, tf.float32).numpy()))


def test_normalize_option():
    raw = random_features(8, 2, 4, seed=12, normalize=False) * 3.0
    unit = raw / np.linalg.norm(raw, axis=-1, keepdims=True)
    np.testing.assert_allclose(
        supcon_loss(LABELS, raw, normalize=True).numpy(),
        reference_supcon(LABELS, unit, 0.1),
        atol=1e-5,
    )


def test_works_in_tf_function_with_unknown_batch():
    fn = tf.function(
        lambda y, x: supcon_loss(y, x),
        input_signature=[
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None, 2, 4], tf.float32),
        ],
    )
    features = random_features(8, 2, 4, seed=13)
    np.testing.assert_allclose(
        fn(LABELS, tf.constant(features, tf.float32)).numpy(),
        reference_supcon(LABELS, features, 0.1),
        atol=1e-5,
    )


# --- The Keras loss class ---------------------------------------------------------------


def test_loss_class_reductions():
    features = random_features(8, 2, 4, seed=14)
    per_sample = reference_supcon(LABELS, features, 0.2)
    for reduction, expected in [
        ("sum_over_batch_size", per_sample.mean()),
        ("sum", per_sample.sum()),
        (None, per_sample),
    ]:
        loss = SupConLoss(temperature=0.2, reduction=reduction)
        np.testing.assert_allclose(loss(LABELS, features).numpy(), expected, rtol=1e-5)


def test_loss_class_simclr_without_labels():
    features = random_features(8, 2, 4, seed=15)
    loss = SupConLoss(temperature=0.2)
    np.testing.assert_allclose(
        loss(None, features).numpy(), reference_supcon(None, features, 0.2).mean(), rtol=1e-5
    )


def test_sample_weight():
    features = random_features(8, 2, 4, seed=16)
    weights = np.linspace(0.0, 1.0, 8)
    per_sample = reference_supcon(LABELS, features, 0.1)
    loss = SupConLoss(reduction="sum")(LABELS, features, sample_weight=weights)
    np.testing.assert_allclose(loss.numpy(), (per_sample * weights).sum(), rtol=1e-5)


def test_config_round_trip():
    loss = SupConLoss(
        temperature=0.2,
        base_temperature=0.07,
        contrast_mode="one",
        summation_location="inside",
        denominator_mode="one_positive",
        positives_cap=4,
        normalize=True,
        gather_across_replicas=False,
        reduction="sum",
        name="my_supcon",
    )
    clone = harness.assert_config_round_trip(loss, skip=("dtype",))
    assert clone.positives_cap == 4 and clone.contrast_mode == "one"


def toy_model(dim=6, seed=0):
    inputs = keras.Input([2, 5])
    x = keras.layers.Dense(
        dim, kernel_initializer=keras.initializers.GlorotUniform(seed=seed)
    )(inputs)
    outputs = keras.layers.UnitNormalization(axis=-1)(x)
    return keras.Model(inputs, outputs)


def test_compile_save_and_load(tmp_path):
    model = toy_model()
    model.compile(optimizer="sgd", loss=SupConLoss(temperature=0.3, contrast_mode="one"))
    inputs = np.random.default_rng(0).normal(size=(4, 2, 5)).astype("float32")
    restored = harness.assert_keras_round_trip(model, inputs, tmp_path)
    assert isinstance(restored.loss, SupConLoss)
    assert restored.loss.temperature == 0.3 and restored.loss.contrast_mode == "one"


def make_toy_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, size=n)
    centers = rng.normal(size=(4, 5)) * 2
    views = centers[labels][:, None, :] + rng.normal(size=(n, 2, 5))
    return views.astype("float32"), labels


def test_fit_decreases_loss():
    x, y = make_toy_data()
    model = toy_model()
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=SupConLoss(temperature=0.5))
    history = model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.05, losses


# --- Errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=0.0), "`temperature` must be > 0. Received: temperature=0.0"),
        (dict(temperature=-1), "temperature=-1"),
        (dict(base_temperature=0.0), "`base_temperature` must be > 0"),
        (dict(contrast_mode="first"), "contrast_mode='first'"),
        (dict(summation_location="middle"), "summation_location='middle'"),
        (dict(denominator_mode="none"), "denominator_mode='none'"),
        (dict(positives_cap=-1), "positives_cap=-1"),
        (dict(positives_cap=1.5), "positives_cap=1.5"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    features = random_features(4, 2, 3)
    with pytest.raises(ValueError, match=match):
        supcon_loss(None, features, **kwargs)
    with pytest.raises(ValueError, match=match):
        SupConLoss(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"`features` must have rank >= 3.*\(4, 3\)"):
        supcon_loss(None, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"one entry per sample.*labels.shape=\(3,\)"):
        supcon_loss(np.arange(3), random_features(4, 2, 3))
    with pytest.raises(ValueError, match=r"views=1.*contrast_mode='one'"):
        supcon_loss(None, random_features(4, 1, 3), contrast_mode="one")
    with pytest.raises(ValueError, match=r"`labels` must be int class ids.*\(4, 2, 1\)"):
        supcon_loss(np.zeros((4, 2, 1)), random_features(4, 2, 3))
