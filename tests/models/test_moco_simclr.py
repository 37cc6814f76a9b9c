import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models.moco_simclr import SimCLRMixCoModel, nt_xent_loss
from tests import harness


def _reference_nt_xent(z1, z2, temperature):
    z = np.concatenate([z1, z2])
    n = len(z1)
    losses = []
    for a in range(2 * n):
        p = (a + n) % (2 * n)
        logits = [np.dot(z[a], z[c]) / temperature for c in range(2 * n) if c != a]
        log_den = max(logits) + np.log(sum(np.exp(l - max(logits)) for l in logits))
        losses.append(log_den - np.dot(z[a], z[p]) / temperature)
    return np.array(losses)


def test_nt_xent_matches_numpy_reference():
    rng = np.random.default_rng(0)
    z1, z2 = rng.normal(size=(2, 5, 4))
    z1 /= np.linalg.norm(z1, axis=1, keepdims=True)
    z2 /= np.linalg.norm(z2, axis=1, keepdims=True)
    actual = nt_xent_loss(tf.constant(z1), tf.constant(z2), 0.5).numpy()
    np.testing.assert_allclose(actual, _reference_nt_xent(z1, z2, 0.5), atol=1e-6)


def _encoder():
    return keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3), keras.layers.ReLU(),
         keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16)]
    )


def test_fit_decreases_both_terms_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    base = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    views = {k: (base + 0.1 * rng.normal(size=base.shape)).astype("float32")
             for k in ("query", "key")}
    model = SimCLRMixCoModel(_encoder(), seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    ds = tf.data.Dataset.from_tensor_slices(views).batch(8, drop_remainder=True)
    history = model.fit(ds, epochs=5, verbose=0).history
    for term in ("loss", "contrastive_loss", "mixco_loss"):
        assert history[term][-1] < history[term][0], (term, history[term])
    harness.assert_config_round_trip(model)
    harness.assert_keras_round_trip(model, views["query"][:4], tmp_path)


def test_bad_inputs():
    with pytest.raises(ValueError, match="mixco_temperature=0"):
        SimCLRMixCoModel(_encoder(), mixco_temperature=0)
    with pytest.raises(ValueError, match="encoder=Dense"):
        SimCLRMixCoModel(keras.layers.Dense(3))
    model = SimCLRMixCoModel(_encoder())
    model.compile(optimizer="sgd")
    x = np.zeros((6, 8, 8, 3), "float32")
    with pytest.raises(ValueError, match="even batch size"):
        model.fit(tf.data.Dataset.from_tensor_slices({"query": x, "key": x}).batch(3, True), verbose=0)


def test_evaluate_runs_in_inference_mode_and_leaves_the_model_unchanged():
    encoder = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3), keras.layers.BatchNormalization(),
         keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16)]
    )
    rng = np.random.default_rng(1)
    views = {k: rng.normal(size=(16, 8, 8, 3)).astype("float32") for k in ("query", "key")}
    ds = tf.data.Dataset.from_tensor_slices(views).batch(8, drop_remainder=True)
    model = SimCLRMixCoModel(encoder, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(ds, epochs=1, verbose=0)
    before = [v.numpy().copy() for v in model.variables]
    first = model.evaluate(ds, verbose=0, return_dict=True)
    assert first == model.evaluate(ds, verbose=0, return_dict=True)
    assert set(first) == {"loss", "contrastive_loss", "mixco_loss"}
    for variable, value in zip(model.variables, before):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
