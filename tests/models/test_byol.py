import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models import BYOLModel, ProjectionHead


def _encoder(batch_norm=True):
    layers = [keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3)]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16)]
    return keras.Sequential(layers)


def _model(**kwargs):
    kwargs.setdefault("momentum", 0.9)
    return BYOLModel(
        _encoder(kwargs.pop("batch_norm", True)),
        head=ProjectionHead(8, hidden_dims=(16,)),
        predictor=ProjectionHead(8, hidden_dims=(16,), normalize=False),
        seed=0,
        **kwargs,
    )


def _views(n=16, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    return {k: (base + 0.1 * rng.normal(size=base.shape)).astype("float32") for k in ("query", "key")}


def _dataset(views, batch=4):
    return tf.data.Dataset.from_tensor_slices(views).batch(batch, drop_remainder=True)


def _normalized(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_loss_equals_numpy_reference():
    model = _model()
    model.compile(optimizer="sgd")
    views = _views(4)
    result = model.evaluate(_dataset(views), verbose=0, return_dict=True)

    def online(x):
        return _normalized(model.predictor(model.head(model.encoder(x, training=False))))

    def target(x):
        return _normalized(model.momentum_head(model.momentum_encoder(x, training=False)))

    p1, p2 = online(views["query"]), online(views["key"])
    z1, z2 = target(views["query"]), target(views["key"])
    expected = np.mean(
        [sum((p1[i] - z2[i]) ** 2) + sum((p2[i] - z1[i]) ** 2) for i in range(len(p1))]
    )
    np.testing.assert_allclose(result["byol_loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


def test_target_network_gets_no_gradient_and_follows_the_cosine_schedule():
    total, base = 6, 0.8
    model = _model(momentum=base, total_steps=total)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    pairs = model._momentum_pairs
    online_ids = {id(v) for v in model.trainable_variables}
    assert all(id(t) not in online_ids for _, t in pairs)
    assert all(not t.trainable for _, t in pairs)
    online_steps, targets = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            online_steps.append([s.numpy().astype("float64") for s, _ in pairs])
            targets.append([t.numpy().astype("float64") for _, t in pairs])

    expected = [t.numpy().astype("float64") for _, t in pairs]
    model.fit(_dataset(_views(24)), epochs=1, verbose=0, callbacks=[Record()])
    assert len(targets) == total
    for k in range(total):
        tau = 1 - (1 - base) * (math.cos(math.pi * k / total) + 1) / 2
        np.testing.assert_allclose(float(model.momentum_at(k)), tau, rtol=1e-6)
        expected = [tau * e + (1 - tau) * s for e, s in zip(expected, online_steps[k])]
        for e, t in zip(expected, targets[k]):
            np.testing.assert_allclose(t, e, atol=1e-5)
    np.testing.assert_allclose(float(model.momentum_at(total)), 1.0)
    assert not np.allclose(online_steps[-1][0], online_steps[0][0])  # the online net trained


def test_target_unchanged_with_momentum_one():
    model = _model(momentum=1.0)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [t.numpy() for _, t in model._momentum_pairs]
    model.fit(_dataset(_views(8)), epochs=1, verbose=0)
    for b, (_, t) in zip(before, model._momentum_pairs):
        np.testing.assert_array_equal(b, t.numpy())


def test_one_step_from_random_initialisation_lowers_the_loss():
    model = _model(batch_norm=False, momentum=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.05))
    views = _views(8)
    batch = model.parse_batch(next(iter(_dataset(views, batch=8))))
    before = float(model.compute_terms(batch, training=True)[0]["byol_loss"])
    model.fit(_dataset(views, batch=8), epochs=1, verbose=0)
    after = float(model.compute_terms(batch, training=True)[0]["byol_loss"])
    assert after < before


def test_default_networks_and_errors():
    model = BYOLModel(_encoder())
    assert model.head.output_dim == 256 and model.head.hidden_dims == (4096,)
    assert model.predictor.output_dim == 256
    with pytest.raises(ValueError, match="total_steps=0"):
        BYOLModel(_encoder(), total_steps=0)
    with pytest.raises(ValueError, match="momentum=-0.1"):
        BYOLModel(_encoder(), momentum=-0.1)
    with pytest.raises(ValueError, match="predictor="):
        BYOLModel(_encoder(), predictor="mlp")
