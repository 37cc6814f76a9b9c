import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models.linear_eval import LinearClassifier, linear_evaluation
from keras_contrast.models.resnet import ResNet
from tests import harness


def _separable(n=48, seed=0):
    """Two classes told apart by brightness: a random encoder keeps that linear."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n).astype("int32")
    x = rng.uniform(0, 100, (n, 8, 8, 3)) + 150 * y[:, None, None, None]
    return x.astype("float32"), y


def _encoder():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, x)


def test_linear_evaluation_freezes_encoder_and_learns():
    encoder = _encoder()
    bn = encoder.layers[3]
    bn.moving_variance.assign(np.full(4, 0.01, "float32"))  # a "pretrained" state
    before = [w.numpy().copy() for w in encoder.weights]
    x, y = _separable()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    x_eval, y_eval = _separable(seed=1)
    evaluation = tf.data.Dataset.from_tensor_slices((x_eval, y_eval)).batch(16)
    accuracy, classifier = linear_evaluation(
        encoder, train, evaluation, num_classes=2, epochs=30,
        optimizer=keras.optimizers.Adam(0.05),
    )
    assert accuracy >= 0.9
    assert isinstance(classifier, LinearClassifier)
    # Frozen encoder, BatchNorm in inference mode: nothing moved, moving statistics included.
    for b, w in zip(before, encoder.weights):
        np.testing.assert_array_equal(b, w.numpy())
    logits = classifier.predict(x_eval, verbose=0)
    assert accuracy == pytest.approx(np.mean(np.argmax(logits, -1) == y_eval))


def test_round_trips(tmp_path):
    model = LinearClassifier(ResNet(18, 4, (8, 8, 3)), num_classes=3)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    assert model(x).shape == (2, 3)
    assert model.embed(x).shape == (2, 32)
    harness.assert_config_round_trip(model)
    restored = harness.assert_keras_round_trip(model, x, tmp_path, atol=1e-5)
    assert not restored.encoder.trainable


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes=1"):
        LinearClassifier(_encoder(), num_classes=1)
    with pytest.raises(ValueError, match="epochs=0"):
        linear_evaluation(_encoder(), None, None, num_classes=2, epochs=0)


def test_unfrozen_encoder_trains_end_to_end(tmp_path):
    encoder = ResNet(18, 4, (8, 8, 3))
    model = LinearClassifier(encoder, num_classes=3, freeze_encoder=False)
    x = np.random.default_rng(1).uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    y = np.arange(8) % 3
    before = [w.copy() for w in encoder.get_weights()]
    model.compile(
        optimizer=keras.optimizers.SGD(0.1),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert encoder.trainable
    assert any(np.any(a != b) for a, b in zip(before, encoder.get_weights()))
    clone = harness.assert_config_round_trip(model)
    assert clone.freeze_encoder is False
    restored = harness.assert_keras_round_trip(model, x, tmp_path, atol=1e-5)
    assert restored.encoder.trainable


def test_cached_features_protocol_matches_the_classifier_on_images():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 6, 6, 3)).astype("float32")
    labels = np.repeat(np.arange(3), 20).astype("int32")
    images = centers[labels] + 0.3 * rng.normal(size=(60, 6, 6, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    encoder = keras.Sequential(
        [keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(),
         keras.layers.GlobalAveragePooling2D()]
    )
    before = [w.numpy().copy() for w in encoder.weights]
    accuracy, classifier = linear_evaluation(
        encoder, data, data, num_classes=3, epochs=30, cache_features=True, batch_size=8,
        optimizer=keras.optimizers.SGD(0.5, momentum=0.9), seed=0,
    )
    assert classifier.built
    assert accuracy > 0.6  # three well separated clusters
    # The reported accuracy is the returned classifier's on images (same Dense weights).
    predicted = np.argmax(classifier.predict(images, verbose=0), axis=-1)
    np.testing.assert_allclose(accuracy, np.mean(predicted == labels), atol=1e-6)
    for b, w in zip(before, encoder.weights):  # frozen, BN statistics included
        np.testing.assert_array_equal(b, w.numpy())
    with pytest.raises(ValueError, match="batch_size=0"):
        linear_evaluation(encoder, data, data, 3, cache_features=True, batch_size=0)


def test_keras_round_trip_keeps_the_optimizer_state_and_the_frozen_encoder(tmp_path):
    import warnings

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    y = np.arange(16) % 3
    classifier = LinearClassifier(ResNet(18, 4, (8, 8, 3)), 3)
    classifier.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    classifier.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / "linear.keras")
    classifier.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0.1.0: "Skipping variable loading for optimizer"
        restored = keras.saving.load_model(path)
    assert len(restored.trainable_variables) == 2  # the Dense only
    for a, b in zip(classifier.optimizer.variables, restored.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # Resuming continues: one more epoch from either gives the same weights.
    classifier.fit(x, y, epochs=1, verbose=0, shuffle=False)
    restored.fit(x, y, epochs=1, verbose=0, shuffle=False)
    for a, b in zip(classifier.get_weights(), restored.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
