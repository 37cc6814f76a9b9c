"""SupConModel with a momentum encoder and a labelled queue (the paper's memory SupCon)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses import SupConLoss
from keras_contrast.models import ProjectionHead, SupConModel
from tests import harness


def _encoder():
    return keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(8, 3), keras.layers.ReLU(),
         keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16)]
    )


def _model(queue_size=16, **kwargs):
    return SupConModel(
        _encoder(), head=ProjectionHead(8, hidden_dims=(16,)),
        loss=SupConLoss(temperature=0.2, base_temperature=0.07),
        queue_size=queue_size, momentum=0.9, seed=0, **kwargs,
    )


def _batches(n=16, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    x = {k: rng.normal(size=(n, 8, 8, 3)).astype("float32") for k in ("query", "key")}
    x["labels"] = rng.integers(0, 3, n).astype("int32")
    return x, tf.data.Dataset.from_tensor_slices(x).batch(batch, drop_remainder=True)


def _normalized(x):
    x = np.asarray(x, "float64")
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _reference(anchors, labels, keys, key_labels, temperature, base_temperature):
    losses = []
    for i in range(len(anchors)):
        logits = np.array([anchors[i] @ k for k in keys]) / temperature
        log_denominator = logits.max() + np.log(np.sum(np.exp(logits - logits.max())))
        positives = [j for j in range(len(keys)) if key_labels[j] == labels[i]]
        total = sum(logits[p] - log_denominator for p in positives)
        losses.append(-(temperature / base_temperature) * total / len(positives)
                      if positives else 0.0)
    return float(np.mean(losses))


def test_loss_against_batch_keys_and_labelled_queue_matches_numpy():
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    _, train = _batches()
    model.fit(train, epochs=1, verbose=0)  # real keys and labels in the queue
    x, data = _batches(4, seed=3)
    result = model.evaluate(data, verbose=0, return_dict=True)
    anchors = _normalized(model.head(model.encoder(x["query"])))
    keys = _normalized(model.momentum_head(model.momentum_encoder(x["key"])))
    queue, queue_labels = np.asarray(model.queue()), model.queue.labels.numpy()
    assert set(queue_labels) <= {0, 1, 2}  # 16 keys enqueued: no initial slot left
    expected = _reference(
        anchors, x["labels"], np.concatenate([keys, queue]),
        np.concatenate([x["labels"], queue_labels]), 0.2, 0.07,
    )
    np.testing.assert_allclose(result["contrastive_loss"], expected, rtol=1e-5)


def test_queue_holds_the_last_keys_with_their_labels():
    model = _model(queue_size=8)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    x, train = _batches(12)
    model.fit(train, epochs=1, verbose=0)
    # 3 batches of 4 into 8 slots: batch 2 (labels 8..11) overwrote batch 0 in rows 0-3.
    np.testing.assert_array_equal(
        model.queue.labels.numpy(), np.concatenate([x["labels"][8:12], x["labels"][4:8]])
    )
    assert int(model.queue.pointer.numpy()) == 4


def test_requires_labels_and_gives_finite_loss_without_positives():
    model = _model()
    model.compile(optimizer="sgd")
    x, _ = _batches(4)
    with pytest.raises(ValueError, match="needs labels"):
        model.fit(
            tf.data.Dataset.from_tensor_slices({"query": x["query"], "key": x["key"]}).batch(4),
            verbose=0,
        )
    # An anchor whose label no key has... cannot happen (its own key is a positive), but
    # labels that differ from every queued label still give a finite loss.
    x["labels"] = np.array([5, 6, 7, 8], "int32")
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_mirrored_strategy_enqueues_the_global_batch_with_labels():
    x, _ = _batches(8)
    with harness.mirrored_strategy().scope():
        model = _model(queue_size=16)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
    model.fit(tf.data.Dataset.from_tensor_slices(x).batch(8), epochs=1, verbose=0)
    for component in model.queue.labels.value.values:
        np.testing.assert_array_equal(component.numpy()[:8], x["labels"])


def test_short_last_batches_fit_for_several_epochs():
    # 10 examples in batches of 4 (a last batch of 2) and a queue of 16 keys.
    x, _ = _batches(n=10)
    model = _model(queue_size=16)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(tf.data.Dataset.from_tensor_slices(x).batch(4), epochs=3,
                        verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert int(model.queue.pointer.numpy()) == 30 % 16
