import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models.moco import MoCoModel
from keras_contrast.models.momentum import (
    clone_momentum_encoder,
    momentum_pairs,
    momentum_update,
)
from tests import harness


def _encoder(bn=True):
    layers = [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)]
    if bn:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8)]
    return keras.Sequential(layers)


def test_clone_copies_weights_and_is_never_trainable():
    encoder = _encoder()
    clone = clone_momentum_encoder(encoder)
    for a, b in zip(encoder.get_weights(), clone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert clone.trainable_weights == []
    # Layers stay trainable so batch norm uses batch statistics (training mode) as in MoCo.
    assert all(layer.trainable for layer in clone.layers)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 3)).astype("float32") * 3 + 1
    train_out = clone(x, training=True).numpy()
    infer_out = clone(x, training=False).numpy()
    assert not np.allclose(train_out, infer_out)


def test_momentum_update_is_the_ema_formula():
    encoder = _encoder(bn=False)
    clone = clone_momentum_encoder(encoder)
    pairs = momentum_pairs(encoder, clone)
    rng = np.random.default_rng(1)
    expected = [v.numpy().astype("float64") for _, v in pairs]
    for _ in range(3):
        for source, _ in pairs:
            source.assign(rng.normal(size=source.shape).astype("float32"))
        momentum_update(pairs, 0.9)
        expected = [0.9 * e + 0.1 * s.numpy() for e, (s, _) in zip(expected, pairs)]
    for e, (_, target) in zip(expected, pairs):
        np.testing.assert_allclose(target.numpy(), e, atol=1e-6)


def test_momentum_update_per_replica_under_mirrored_strategy():
    strategy = harness.mirrored_strategy()
    with strategy.scope():
        encoder = _encoder(bn=False)
        clone = clone_momentum_encoder(encoder)
        pairs = momentum_pairs(encoder, clone)
    start = [t.numpy() for _, t in pairs]
    for source, _ in pairs:
        source.assign(tf.ones(source.shape))

    @tf.function
    def step():
        strategy.run(lambda: momentum_update(pairs, 0.75))

    step()
    for s0, (_, target) in zip(start, pairs):
        for component in target.value.values:  # identical on every replica
            np.testing.assert_allclose(component.numpy(), 0.75 * s0 + 0.25, atol=1e-6)


def test_moco_key_encoder_follows_ema_after_each_optimizer_step():
    keras.utils.set_random_seed(0)
    m = 0.7
    model = MoCoModel(_encoder(), queue_size=8, momentum=m, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    pairs = model._momentum_pairs
    assert not any(
        v is t for v in model.trainable_variables for _, t in pairs
    ), "key-encoder variables must not be trainable"
    queries, keys = [], []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            queries.append([s.numpy().astype("float64") for s, _ in pairs])
            keys.append([t.numpy().astype("float64") for _, t in pairs])

    initial = [s.numpy().astype("float64") for s, _ in pairs]
    rng = np.random.default_rng(0)
    x = {k: rng.normal(size=(16, 8, 8, 3)).astype("float32") for k in ("query", "key")}
    model.fit(
        tf.data.Dataset.from_tensor_slices(x).batch(4), epochs=1, verbose=0, callbacks=[Record()]
    )
    assert len(queries) == 4
    expected = initial
    for step, query in enumerate(queries):
        expected = [m * e + (1 - m) * q for e, q in zip(expected, query)]
        for e, k in zip(expected, keys[step]):
            np.testing.assert_allclose(k, e, atol=1e-5)
    assert not np.allclose(queries[-1][0], initial[0])  # the query encoder did train


def test_key_encoder_gets_no_gradient():
    # momentum=1: only gradients could change the key encoder, and none may reach it.
    model = MoCoModel(_encoder(), queue_size=8, momentum=1.0, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    before = [t.numpy() for _, t in model._momentum_pairs]
    rng = np.random.default_rng(0)
    x = {k: rng.normal(size=(8, 8, 8, 3)).astype("float32") for k in ("query", "key")}
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), epochs=1, verbose=0)
    after = [t.numpy() for _, t in model._momentum_pairs]
    for b, a in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs():
    with pytest.raises(ValueError, match="encoder=Dense"):
        clone_momentum_encoder(keras.layers.Dense(2))
    with pytest.raises(ValueError, match="momentum=1.5"):
        MoCoModel(_encoder(), queue_size=8, momentum=1.5)
    with pytest.raises(ValueError, match="does not mirror"):
        momentum_pairs(_encoder(bn=False), keras.Sequential([keras.Input((8, 8, 3)),
                                                             keras.layers.Conv2D(5, 3)]))
