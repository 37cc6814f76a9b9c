"""`PiModel`: the Π-model's loss, ramp-up, ImCLR pairing, saving and distribution."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.layers import ImCLRPairing
from keras_contrast.models import PiModel
from keras_contrast.models.pi_model import rampup_weight
from tests import harness

CLASSES = 3


def _classifier(width=4, seed=0):
    """Linear logits of the flattened 4x`width` image: easy to recompute in NumPy."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4, width, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(CLASSES)])


class _TwoFixedViews(keras.layers.Layer):
    """A deterministic stand-in for the augmentation: x * 0.9 on odd calls, x + 3 on even."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.calls = 0

    def call(self, images, training=False):
        self.calls += 1
        return images * 0.9 if self.calls % 2 else images + 3.0


def _batch(labelled=4, unlabelled=6, width=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 2, (labelled, 4, width, 3)).astype("float32"),
            rng.integers(0, CLASSES, labelled).astype("int32"),
            rng.uniform(0, 2, (unlabelled, 4, width, 3)).astype("float32"))


def _numpy_softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference_terms(model, labelled, labels, unlabelled, epoch):
    """Laine & Aila's loss, written with loops over images and classes."""
    kernel, bias = [w.numpy().astype(np.float64) for w in model.classifier.layers[-1].weights]
    images = np.concatenate([labelled, unlabelled]).astype(np.float64)
    logits_1 = (images * 0.9).reshape(len(images), -1) @ kernel + bias
    logits_2 = (images + 3.0).reshape(len(images), -1) @ kernel + bias
    p1, p2 = _numpy_softmax(logits_1), _numpy_softmax(logits_2)
    ce = 0.0
    for i, y in enumerate(labels):
        ce -= math.log(p1[i, y])
    ce /= len(labels)
    consistency = 0.0
    for i in range(len(images)):
        for c in range(CLASSES):
            consistency += (p1[i, c] - p2[i, c]) ** 2
    consistency /= len(images) * CLASSES
    weight = model.consistency_weight * math.exp(
        -5 * (1 - min(epoch / model.rampup_epochs, 1)) ** 2)
    return {"ce_loss": ce, "consistency_loss": consistency, "consistency_weight": weight,
            "loss": ce + weight * consistency}


@pytest.mark.parametrize("epoch", [0, 3, 10])
def test_loss_matches_a_numpy_reference(epoch):
    model = PiModel(_classifier(), consistency_weight=20.0, rampup_epochs=6,
                    augment=_TwoFixedViews())
    model.epoch.assign(epoch)
    labelled, labels, unlabelled = _batch()
    terms, _, _ = model.compute_terms(labelled, labels, unlabelled)
    expected = _reference_terms(model, labelled, labels, unlabelled, epoch)
    for name, value in expected.items():
        np.testing.assert_allclose(float(terms[name]), value, rtol=1e-5, err_msg=name)


def test_rampup_schedule():
    for epoch in range(0, 12):
        t = min(epoch / 8, 1.0)
        np.testing.assert_allclose(float(rampup_weight(epoch, 8)), math.exp(-5 * (1 - t) ** 2),
                                   rtol=1e-6)
    assert float(rampup_weight(0, 0)) == 1.0


def _dataset(labelled, labels, unlabelled, batches=(2, 3)):
    parts = (tf.data.Dataset.from_tensor_slices(labelled).batch(batches[0]),
             tf.data.Dataset.from_tensor_slices(unlabelled).batch(batches[1]),
             tf.data.Dataset.from_tensor_slices(labels).batch(batches[0]))
    return tf.data.Dataset.zip(parts).map(
        lambda x, u, y: ({"labelled": x, "unlabelled": u}, y))


def test_fit_follows_the_rampup_per_epoch():
    model = PiModel(_classifier(), consistency_weight=10.0, rampup_epochs=2)
    model.compile(optimizer="sgd")
    history = model.fit(_dataset(*_batch()), epochs=4, verbose=0).history
    np.testing.assert_allclose(history["consistency_weight"],
                               [10 * math.exp(-5), 10 * math.exp(-1.25), 10.0, 10.0],
                               rtol=1e-5)
    assert int(model.epoch.numpy()) == 3


def test_the_unlabelled_part_gets_no_cross_entropy():
    model = PiModel(_classifier(), consistency_weight=0.0, augment=_TwoFixedViews())
    labelled, labels, unlabelled = _batch()
    variables = model.classifier.trainable_variables
    gradients = []
    for other in (unlabelled, unlabelled * 5 + 7):
        with tf.GradientTape() as tape:
            terms, _, _ = model.compute_terms(labelled, labels, other)
        gradients.append([g.numpy() for g in tape.gradient(terms["loss"], variables)])
    # Without the consistency term, other unlabelled images change nothing.
    for a, b in zip(*gradients):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    with_labels = _reference_terms(model, labelled, labels, unlabelled, 0)["ce_loss"]
    np.testing.assert_allclose(float(terms["ce_loss"]), with_labels, rtol=1e-5)


def test_imclr_pairing_inside_the_pi_model():
    pairing = ImCLRPairing(axis="width", seed=3)
    model = PiModel(_classifier(width=8), consistency_weight=1.0, rampup_epochs=0,
                    augment=keras.layers.Identity(), pairing=pairing)
    labelled, labels, unlabelled = _batch()
    paired, targets, paired_unlabelled = model._pair(labelled, labels, unlabelled)
    assert paired.shape == (4, 4, 8, 3) and paired_unlabelled.shape == (6, 4, 8, 3)
    # Labelled images are paired with labelled partners and the labels averaged.
    for i in range(4):
        left, right = paired[i, :, :4].numpy(), paired[i, :, 4:].numpy()
        np.testing.assert_array_equal(left, labelled[i])
        j = [k for k in range(4) if np.array_equal(labelled[k], right)]
        assert len(j) == 1
        expected = (np.eye(CLASSES)[labels[i]] + np.eye(CLASSES)[labels[j[0]]]) / 2
        np.testing.assert_allclose(targets[i].numpy(), expected)
    # Unlabelled images only with unlabelled partners.
    for i in range(6):
        right = paired_unlabelled[i, :, 4:].numpy()
        assert any(np.array_equal(u, right) for u in unlabelled)
    # Inference self-pairs each image (4x4 in, the classifier sees 4x8).
    logits = model.predict(labelled, verbose=0)
    expected = model.classifier.predict(np.concatenate([labelled, labelled], axis=2), verbose=0)
    np.testing.assert_allclose(logits, expected, rtol=1e-5)
    model.compile(optimizer="sgd")
    history = model.fit(_dataset(*_batch()), epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_keras_round_trip(tmp_path):
    model = PiModel(_classifier(), consistency_weight=5.0, rampup_epochs=3,
                    pairing=None)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(_dataset(*_batch()), epochs=2, verbose=0)
    images = _batch()[0]
    restored = harness.assert_keras_round_trip(model, images, tmp_path)
    assert int(restored.epoch.numpy()) == 1
    assert (restored.consistency_weight, restored.rampup_epochs) == (5.0, 3)
    # The optimizer state came back: one more step gives the same weights on both.
    batch = next(iter(_dataset(*_batch(seed=1))))
    for m in (model, restored):
        m.augment = keras.layers.Identity()
        m.train_on_batch(*batch)
    for a, b in zip(model.classifier.weights, restored.classifier.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_mirrored_strategy_matches_one_device():
    """One step on 2 replicas gives the weights of one step on one device (global batch)."""
    labelled, labels, unlabelled = _batch(labelled=4, unlabelled=8)
    dataset = _dataset(labelled, labels, unlabelled, batches=(4, 8))
    weights = []
    for strategy in (tf.distribute.get_strategy(), harness.mirrored_strategy()):
        with strategy.scope():
            model = PiModel(_classifier(seed=5), consistency_weight=3.0, rampup_epochs=0,
                            augment=keras.layers.Identity())
            model.compile(optimizer=keras.optimizers.SGD(0.5))
        model.fit(dataset, epochs=1, verbose=0)
        weights.append([w.numpy() for w in model.classifier.weights])
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_short_fit_lowers_both_terms():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(CLASSES), 8).astype("int32")
    means = np.array([30.0, 128.0, 220.0])[labels]
    labelled = (means[:, None, None, None] + rng.normal(0, 20, (24, 4, 4, 3))).astype("float32")
    unlabelled = (np.array([30.0, 128.0, 220.0])[rng.integers(0, 3, 48)][:, None, None, None]
                  + rng.normal(0, 20, (48, 4, 4, 3))).astype("float32")
    keras.utils.set_random_seed(1)
    classifier = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Rescaling(1 / 255.0),
                                   keras.layers.Flatten(), keras.layers.Dense(16, "relu"),
                                   keras.layers.Dense(CLASSES)])
    train = _dataset(labelled, labels, unlabelled, batches=(8, 16)).repeat(5)
    # Cross-entropy alone first: the classifier grows confident, and inconsistent under the
    # augmentation (an untrained one is uniform, so consistent, everywhere).
    warm = PiModel(classifier, consistency_weight=0.0)
    warm.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = warm.fit(train, epochs=3, verbose=0).history
    assert before["consistency_loss"][-1] > before["consistency_loss"][0]
    model = PiModel(classifier, consistency_weight=20.0, rampup_epochs=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    history = model.fit(train, epochs=6, verbose=0).history
    assert history["ce_loss"][-1] < 0.7 * history["ce_loss"][0]
    assert history["consistency_loss"][-1] < 0.9 * history["consistency_loss"][0]
    accuracy = model.evaluate(tf.data.Dataset.from_tensor_slices((labelled, labels)).batch(8),
                              verbose=0, return_dict=True)["accuracy"]
    assert accuracy > 0.9


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(consistency_weight=-1.0), "`consistency_weight` must be a finite number >= 0"),
        (dict(consistency_weight=float("nan")), "consistency_weight=nan"),
        (dict(rampup_epochs=-1), "`rampup_epochs` must be an int >= 0. Received: rampup_epochs=-1"),
        (dict(rampup_epochs=2.5), "rampup_epochs=2.5"),
        (dict(pairing="width"), "`pairing` must be None or an ImCLRPairing"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PiModel(_classifier(), **kwargs)


def test_bad_batches_and_classifiers():
    with pytest.raises(ValueError, match="`classifier` must be a built Keras model"):
        PiModel(keras.Sequential([keras.layers.Dense(3)]))
    model = PiModel(_classifier())
    model.compile(optimizer="sgd")
    labelled, labels, unlabelled = _batch()
    with pytest.raises(ValueError, match=r"batches \(\{'labelled'.*Received: \['images'\]"):
        model.fit(tf.data.Dataset.from_tensors(({"images": labelled}, labels)), verbose=0)
    with pytest.raises(ValueError, match="needs the labels of the labelled images"):
        model.fit(tf.data.Dataset.from_tensors({"labelled": labelled, "unlabelled": unlabelled}),
                  verbose=0)
    with pytest.raises(ValueError, match="computes its own losses"):
        model.compile(optimizer="sgd", loss="mse")


def test_export_serves_the_classifier_probabilities(tmp_path):
    import keras_contrast as kc

    model = PiModel(_classifier(width=8), pairing=ImCLRPairing(axis="width", seed=0))
    labelled = _batch()[0]
    export_dir = kc.export.export_saved_model(model, str(tmp_path / "export"), (4, 4))
    served = tf.saved_model.load(export_dir)
    out = served.signatures["serving_default"](images=tf.constant(labelled))
    assert set(out) == {"probabilities"}
    expected = tf.nn.softmax(model.predict(labelled, verbose=0)).numpy()
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
