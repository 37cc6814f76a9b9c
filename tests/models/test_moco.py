import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models import ProjectionHead
from keras_contrast.models.moco import (
    MoCoModel,
    shuffle_across_replicas,
    unshuffle_across_replicas,
)
from keras_contrast.objectives import CLSA, MixCo
from tests import harness


def _head():
    return ProjectionHead(16, kind="linear")


def _moco(encoder=None, clsa=False, mixco=False, **kwargs):
    add_ons = ([CLSA()] if clsa else []) + ([MixCo()] if mixco else [])
    return MoCoModel(
        encoder if encoder is not None else _encoder(), head=_head(), add_ons=add_ons, **kwargs
    )


def _encoder(size=8, bn=True, dim=16):
    layers = [keras.Input((size, size, 3)), keras.layers.Conv2D(8, 3)]
    if bn:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(dim)]
    return keras.Sequential(layers)


def _views(n=32, seed=0):
    """Distinct random images; views are small perturbations (strong: larger ones)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    noise = lambda s: (base + s * rng.normal(size=base.shape)).astype("float32")  # noqa: E731
    return {"query": noise(0.1), "key": noise(0.1), "strong": noise(0.3)}


def _dataset(views, batch=8):
    return tf.data.Dataset.from_tensor_slices(views).batch(batch, drop_remainder=True)


def _assert_terms_decrease(history, terms):
    for term in terms:
        values = history[term]
        # Epoch 1 fills the queue with real keys (the loss rises); from then on it must fall.
        assert values[-1] < values[1], f"{term} did not decrease: {values}"


@pytest.mark.parametrize(
    "options, terms",
    [
        ({}, ["contrastive_loss"]),
        ({"clsa": True}, ["contrastive_loss", "ddm_loss"]),
        ({"mixco": True}, ["contrastive_loss", "mixco_loss"]),
    ],
    ids=["moco", "moco+clsa", "moco+mixco"],
)
def test_fit_decreases_each_loss_term(options, terms):
    keras.utils.set_random_seed(0)
    model = _moco(_encoder(), queue_size=16, momentum=0.9, seed=1, **options)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(_dataset(_views()), epochs=8, verbose=0).history
    assert set(terms + ["loss", "z_std"]) == set(history)
    _assert_terms_decrease(history, terms + ["loss"])


def _fit_under_strategy(options, epochs):
    keras.utils.set_random_seed(0)
    with harness.mirrored_strategy().scope():
        model = _moco(_encoder(), queue_size=16, momentum=0.9, seed=1, **options)
        model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model, model.fit(_dataset(_views()), epochs=epochs, verbose=0).history


def test_fit_under_mirrored_strategy_with_clsa_and_mixco():
    model, history = _fit_under_strategy({"clsa": True, "mixco": True}, epochs=8)
    _assert_terms_decrease(history, ["contrastive_loss", "ddm_loss", "mixco_loss", "loss"])
    # 8 global keys per step into 16 slots: 4 steps per epoch, pointer back at 0.
    for component in model.queue.pointer.value.values:
        assert int(component.numpy()) == 0
    queues = [c.numpy() for c in model.queue.queue.value.values]
    np.testing.assert_array_equal(queues[0], queues[1])
    np.testing.assert_allclose(np.linalg.norm(queues[0], axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options, terms",
    [({}, ["contrastive_loss"]), ({"clsa": True}, ["ddm_loss"]), ({"mixco": True}, ["mixco_loss"])],
    ids=["moco", "moco+clsa", "moco+mixco"],
)
def test_fit_under_mirrored_strategy_each_variant(options, terms):
    _, history = _fit_under_strategy(options, epochs=8)
    _assert_terms_decrease(history, terms)


def test_one_step_under_strategy_matches_one_device_on_the_global_batch():
    # No BN and no shuffle: the step is deterministic, so weights, queue and keys must match.
    views = _views(8)

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = _moco(
                _encoder(bn=False), queue_size=16, momentum=0.5, shuffle_bn=False, seed=3,
                clsa=True,
            )
            model.compile(optimizer=keras.optimizers.SGD(1.0))
        model.fit(_dataset(views), epochs=1, verbose=0)
        return (
            [w.numpy() for w in model.encoder.weights],
            [w.numpy() for w in model.momentum_encoder.weights + model.momentum_head.weights],
            model.queue().numpy(),
        )

    single = run(tf.distribute.get_strategy())
    mirrored = run(harness.mirrored_strategy())
    for a, b in zip(tf.nest.flatten(single), tf.nest.flatten(mirrored)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_shuffle_restores_order_on_one_device():
    x = tf.range(12, dtype=tf.float32)[:, None] * tf.ones([1, 3])
    shuffled, permutation = shuffle_across_replicas(x, tf.constant([1, 2]))
    assert not np.array_equal(shuffled.numpy(), x.numpy())
    np.testing.assert_array_equal(np.sort(shuffled.numpy()[:, 0]), x.numpy()[:, 0])
    np.testing.assert_array_equal(unshuffle_across_replicas(shuffled * 2, permutation), x * 2)


def test_shuffle_across_replicas_mixes_the_global_batch_and_restores_order():
    strategy = harness.mirrored_strategy()
    global_x = np.arange(16, dtype="float32")[:, None]
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(global_x[8 * ctx.replica_id_in_sync_group :][:8])
    )

    @tf.function
    def step(x):
        def fn(local):
            shuffled, permutation = shuffle_across_replicas(local, tf.constant([4, 5]))
            return shuffled, unshuffle_across_replicas(shuffled + 100, permutation)

        return strategy.run(fn, args=(x,))

    shuffled, restored = step(values)
    shuffled = [s.numpy()[:, 0] for s in strategy.experimental_local_results(shuffled)]
    restored = [r.numpy() for r in strategy.experimental_local_results(restored)]
    # Replicas hold disjoint slices of one permutation of the global batch ...
    np.testing.assert_array_equal(np.sort(np.concatenate(shuffled)), global_x[:, 0])
    assert not np.array_equal(np.concatenate(shuffled), global_x[:, 0])
    assert any(v >= 8 for v in shuffled[0])  # replica 0 got keys of replica 1
    # ... and each replica gets its own rows back in order.
    np.testing.assert_array_equal(np.concatenate(restored), global_x + 100)


@pytest.mark.parametrize("bn_splits", [1, 2])
def test_key_order_restored_in_the_trainer(bn_splits):
    model = _moco(_encoder(bn=False), queue_size=16, shuffle_bn=True, bn_splits=bn_splits)
    images = _views(8)["key"]
    keys = model.encode_keys(tf.constant(images), training=True).numpy()
    expected = model.momentum_head(model.momentum_encoder(images, training=True))
    expected = tf.math.l2_normalize(expected, axis=-1).numpy()
    np.testing.assert_allclose(keys, expected, atol=1e-6)


@pytest.mark.parametrize("clsa, mixco", [(False, False), (True, True)])
def test_short_last_batches_fit_for_several_epochs(clsa, mixco):
    # 10 examples in batches of 4 (the last one of 2) with a queue of 16: 0.1.0 broke the
    # queue one epoch later.
    model = _moco(queue_size=16, clsa=clsa, mixco=mixco, seed=0)
    model.compile(optimizer="sgd")
    dataset = tf.data.Dataset.from_tensor_slices(_views(10)).batch(4)
    history = model.fit(dataset, epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert int(model.queue.pointer.numpy()) == (3 * 10) % 16
    with pytest.raises(ValueError, match="`bn_splits=2` needs batches of a static size"):
        split = _moco(queue_size=16, bn_splits=2)
        split.compile(optimizer="sgd")
        split.fit(dataset, epochs=1, verbose=0)


def test_default_key_splits_follow_the_batch_on_one_device():
    model = _moco(queue_size=128)
    # Groups of >= 16 keys: 8 groups at 128 (MoCo's CIFAR demo), fewer for smaller batches.
    splits = {b: model.key_splits(b) for b in (256, 128, 96, 64, 48, 32, 24, 16, 8, None)}
    assert splits == {256: 8, 128: 8, 96: 4, 64: 4, 48: 2, 32: 2, 24: 1, 16: 1, 8: 1, None: 1}
    assert _moco(queue_size=128, bn_splits=1).key_splits(128) == 1
    assert _moco(queue_size=128, bn_splits=4).key_splits(128) == 4
    # Across replicas shuffle-BN mixes the batch: no split by default.
    strategy = harness.mirrored_strategy()
    with strategy.scope():
        assert strategy.run(lambda: tf.constant(model.key_splits(128))).values[0] == 1


def test_default_key_split_runs_batchnorm_on_sub_batches():
    images = tf.constant(_views(32)["key"])
    models = [_moco(_encoder(), queue_size=32, shuffle_bn=False, bn_splits=b, seed=0)
              for b in (None, 1, 2)]
    for m in models[1:]:
        m.set_weights(models[0].get_weights())
    auto, whole, two = [m.encode_keys(images, training=True).numpy() for m in models]
    np.testing.assert_allclose(auto, two, atol=1e-6)
    assert np.abs(auto - whole).max() > 1e-3


def test_multi_crop_clsa():
    encoder = keras.Sequential(
        [keras.Input((None, None, 3)), keras.layers.Conv2D(8, 3), keras.layers.ReLU(),
         keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16)]
    )
    rng = np.random.default_rng(0)
    img = lambda s: rng.normal(size=(8, s, s, 3)).astype("float32")  # noqa: E731
    x = {"query": (img(8), img(6)), "key": img(8), "strong": (img(8), img(6), img(6))}
    model = _moco(encoder, queue_size=8, clsa=True, seed=0)
    terms, _ = model.compute_terms(model.parse_batch(x), training=True)
    single_x = {"query": x["query"][:1], "key": x["key"], "strong": x["strong"][:1]}
    single, _ = model.compute_terms(model.parse_batch(single_x), training=True)
    # 2 contrastive terms and 2 x 3 DDM terms, each about log(K + 1) at initialisation.
    assert terms["contrastive_loss"] > 1.5 * single["contrastive_loss"]
    assert terms["ddm_loss"] > 4.5 * single["ddm_loss"]
    model.compile(optimizer="sgd")
    ds = tf.data.Dataset.from_tensors(x)
    history = model.fit(ds, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_keras_round_trip_keeps_queue_and_momentum_weights(tmp_path):
    model = _moco(_encoder(), queue_size=16, momentum=0.9, seed=1, clsa=True, mixco=True)
    model.compile(optimizer="adam")
    model.fit(_dataset(_views(8)), epochs=1, verbose=0)
    images = _views(4)["query"]
    restored = harness.assert_keras_round_trip(model, images, tmp_path)
    momentum = lambda m: m.momentum_encoder.weights + m.momentum_head.weights  # noqa: E731
    for a, b in zip(momentum(model) + model.queue.weights,
                    momentum(restored) + restored.queue.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(restored.queue.pointer.numpy()) == 8
    assert restored.momentum_encoder.trainable_weights == []
    assert restored.momentum_head.trainable_weights == []
    harness.assert_config_round_trip(model)


def test_save_weights_round_trip(tmp_path):
    model = _moco(_encoder(), queue_size=16, seed=1)
    model.compile(optimizer="adam")
    model.fit(_dataset(_views(8)), epochs=1, verbose=0)
    path = str(tmp_path / "moco.weights.h5")
    model.save_weights(path)
    other = _moco(_encoder(), queue_size=16, seed=2)
    other.load_weights(path)
    for a, b in zip(model.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_bad_inputs():
    with pytest.raises(ValueError, match="temperature=0"):
        _moco(_encoder(), queue_size=8, temperature=0)
    with pytest.raises(ValueError, match="bn_splits=0"):
        _moco(_encoder(), queue_size=8, bn_splits=0)
    with pytest.raises(ValueError, match="queue_size=0"):
        _moco(_encoder(), queue_size=0)
    with pytest.raises(ValueError, match="momentum=1.5"):
        _moco(_encoder(), momentum=1.5)
    views = _views(8)
    model = _moco(_encoder(), queue_size=16, clsa=True)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="needs strong views in the batch"):
        model.fit(_dataset({"query": views["query"], "key": views["key"]}), verbose=0)
    with pytest.raises(ValueError, match="expects batches"):
        model.fit(_dataset({"query": views["query"]}), verbose=0)
    model = _moco(_encoder(), queue_size=16)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="at most the queue size. Received: size=16, global "
                                         "batch=32"):
        model.fit(_dataset(views, batch=32), verbose=0)
    model = _moco(_encoder(), queue_size=14, mixco=True)
    model.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="even batch size"):
        model.fit(_dataset(views, batch=7), verbose=0)


def _info_nce_numpy(q, k, negatives, temperature):
    """Loop-based InfoNCE: -log softmax([q.k, q.n_1, ...] / T)[0], averaged over rows."""
    losses = []
    for i in range(len(q)):
        logits = [q[i] @ k[i]] + [q[i] @ n for n in negatives]
        logits = np.array(logits, "float64") / temperature
        losses.append(np.log(np.sum(np.exp(logits - logits.max()))) + logits.max() - logits[0])
    return float(np.mean(losses))


def test_evaluate_runs_in_inference_mode_and_leaves_the_model_unchanged():
    model = _moco(_encoder(), queue_size=16, momentum=0.9, clsa=True, mixco=True, seed=1)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(_dataset(_views()), epochs=2, verbose=0)  # Real BN statistics and queue.
    before = [v.numpy().copy() for v in model.variables]
    views = _views(8, seed=3)
    first = model.evaluate(_dataset(views), verbose=0, return_dict=True)
    second = model.evaluate(_dataset(views), verbose=0, return_dict=True)
    assert first == second  # Fixed mixing seed: repeatable.
    assert set(first) == {"loss", "contrastive_loss", "ddm_loss", "mixco_loss", "z_std"}
    for variable, value in zip(model.variables, before):  # BN, queue, seeds, weights.
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)

    def normalized(x):
        x = np.asarray(x, "float64")
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    q = normalized(model.head(model.encoder(views["query"], training=False), training=False))
    k = normalized(
        model.momentum_head(model.momentum_encoder(views["key"], training=False), training=False)
    )
    expected = _info_nce_numpy(q, k, np.asarray(model.queue()), model.temperature)
    np.testing.assert_allclose(first["contrastive_loss"], expected, rtol=1e-5)
    # Training-mode BatchNorm would give another value.
    q_train = normalized(model.head(model.encoder(views["query"], training=True)))
    assert abs(_info_nce_numpy(q_train, k, np.asarray(model.queue()), model.temperature)
               - expected) > 1e-3


def _softmax_rows(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _ddm_numpy(weak, strong, keys, temperature):
    """Loop-based CLSA DDM: -sum_j p_weak_ij log p_strong_ij over the key set, row mean."""
    losses = []
    for i in range(len(weak)):
        w = np.array([weak[i] @ k for k in keys], "float64") / temperature
        s = np.array([strong[i] @ k for k in keys], "float64") / temperature
        p = np.exp(w - w.max()) / np.sum(np.exp(w - w.max()))
        log_q = s - s.max() - np.log(np.sum(np.exp(s - s.max())))
        losses.append(-np.sum(p * log_q))
    return float(np.mean(losses))


def _batch_negatives_info_nce_numpy(q, keys, queue, temperature):
    """InfoNCE with every batch key and the queue in the softmax; positive = own key."""
    losses = []
    for i in range(len(q)):
        logits = np.array([q[i] @ k for k in list(keys) + list(queue)], "float64") / temperature
        m = logits.max()
        losses.append(np.log(np.sum(np.exp(logits - m))) + m - logits[i])
    return float(np.mean(losses))


@pytest.mark.parametrize("batch_negatives", [False, True])
def test_clsa_on_moco_contrasts_against_batch_keys_and_queue(batch_negatives):
    """CLSA's reference: DDM (and, with batch_negatives, InfoNCE) over [batch keys, queue]."""
    model = _moco(
        _encoder(), queue_size=16, clsa=True, seed=1, batch_negatives=batch_negatives
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    model.fit(_dataset(_views()), epochs=1, verbose=0)
    views = _views(8, seed=5)
    result = model.evaluate(_dataset(views), verbose=0, return_dict=True)

    def normalized(x):
        x = np.asarray(x, "float64")
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    def online(images):
        return normalized(model.head(model.encoder(images, training=False), training=False))

    q, s = online(views["query"]), online(views["strong"])
    k = normalized(
        model.momentum_head(model.momentum_encoder(views["key"], training=False), training=False)
    )
    queue = np.asarray(model.queue(), "float64")
    key_set = np.concatenate([k, queue])
    np.testing.assert_allclose(result["ddm_loss"], _ddm_numpy(q, s, key_set, 0.2), rtol=1e-5)
    if batch_negatives:
        expected = _batch_negatives_info_nce_numpy(q, k, queue, model.temperature)
    else:
        expected = _info_nce_numpy(q, k, queue, model.temperature)
    np.testing.assert_allclose(result["contrastive_loss"], expected, rtol=1e-5)
    # Only the own key and the queue in the DDM rows would give another value.
    own_only = np.mean(
        [_ddm_numpy(q[i : i + 1], s[i : i + 1], np.concatenate([k[i : i + 1], queue]), 0.2)
         for i in range(len(q))]
    )
    assert abs(own_only - result["ddm_loss"]) > 1e-4


def test_symmetric_adds_the_reverse_direction():
    model = _moco(_encoder(bn=False), queue_size=16, seed=1, symmetric=True)
    views = _views(8, seed=2)
    terms, outputs = model.compute_terms(model.parse_batch(views), training=False)

    def normalized(x):
        x = np.asarray(x, "float64")
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    online = lambda x: normalized(model.head(model.encoder(x)))  # noqa: E731
    momentum = lambda x: normalized(model.momentum_head(model.momentum_encoder(x)))  # noqa: E731
    queue = np.asarray(model.queue(), "float64")
    expected = _info_nce_numpy(
        online(views["query"]), momentum(views["key"]), queue, model.temperature
    ) + _info_nce_numpy(online(views["key"]), momentum(views["query"]), queue, model.temperature)
    np.testing.assert_allclose(float(terms["contrastive_loss"]), expected, rtol=1e-5)
