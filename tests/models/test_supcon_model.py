import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.losses.supcon import SupConLoss
from keras_contrast.models.heads import ProjectionHead
from keras_contrast.models.resnet import ResNet
from keras_contrast.models.supcon_model import SupConModel
from tests import harness

SIZE = 16


def _views(batch=8, views=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 255, (batch, views, SIZE, SIZE, 3)).astype("float32")
    y = rng.integers(0, 3, batch).astype("int32")
    return x, y


def _tiny_encoder(batch_norm=False, size=SIZE):
    # No BatchNorm by default: per-replica batch statistics would make MirroredStrategy differ
    # from one device for reasons unrelated to the loss scaling under test.
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, use_bias=not batch_norm)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(6)(x))


def _model(encoder=None, num_classes=3, **kwargs):
    return SupConModel(
        encoder if encoder is not None else ResNet(18, 4, (SIZE, SIZE, 3)),
        ProjectionHead(8),
        loss=SupConLoss(temperature=0.5),
        num_classes=num_classes,
        **kwargs,
    )


def test_fit_one_step_supcon_and_simclr_changes_weights():
    x, y = _views()
    model = _model(encoder=_tiny_encoder(batch_norm=True))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert set(history) == {"loss", "contrastive_loss", "probe_loss", "probe_accuracy", "z_std"}
    assert np.isfinite(history["loss"][0])
    # Unlabelled (SimCLR) batches: the contrastive loss alone; the probe is untouched.
    classifier_before = [w.numpy().copy() for w in model.probe.weights]
    encoder_before = [w.numpy().copy() for w in model.encoder.trainable_weights]
    history = model.fit(x, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["contrastive_loss"][0])
    for b, w in zip(classifier_before, model.probe.weights):
        np.testing.assert_array_equal(b, w.numpy())
    assert any(
        not np.array_equal(b, w.numpy())
        for b, w in zip(encoder_before, model.encoder.trainable_weights)
    )


def test_loss_matches_direct_computation():
    x, y = _views()
    model = _model(encoder=_tiny_encoder(), num_classes=None)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    features = model.encoder(x.reshape((-1, SIZE, SIZE, 3)))
    z = np.asarray(model.head(features)).reshape(8, 2, -1)
    expected = float(SupConLoss(temperature=0.5)(y, z))
    np.testing.assert_allclose(result["loss"], expected, rtol=1e-5)


def test_probe_trains_on_stop_gradient_features():
    x, y = _views()
    with_cls = _model(encoder=_tiny_encoder(), num_classes=3)
    without = _model(encoder=_tiny_encoder(), num_classes=None)
    without.encoder.set_weights(with_cls.encoder.get_weights())
    without.head.set_weights(with_cls.head.get_weights())
    for m in (with_cls, without):
        m.compile(optimizer=keras.optimizers.SGD(0.5))
        m.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    # The probe's cross-entropy must not reach the encoder, but the probe itself trains.
    for a, b in zip(with_cls.encoder.get_weights(), without.encoder.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert int(with_cls.probe_optimizer.iterations.numpy()) == 1


def test_mirrored_strategy_matches_single_device():
    x, y = _views(batch=8)
    reference = _model(encoder=_tiny_encoder(), num_classes=3)
    initial = reference.get_weights()
    reference.compile(optimizer=keras.optimizers.SGD(1.0))
    single = reference.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False).history

    strategy = harness.mirrored_strategy()
    with strategy.scope():
        mirrored = _model(encoder=_tiny_encoder(), num_classes=3)
        mirrored.set_weights(initial)
        mirrored.compile(optimizer=keras.optimizers.SGD(1.0))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    multi = mirrored.fit(dataset, epochs=1, verbose=0).history
    np.testing.assert_allclose(multi["loss"], single["loss"], rtol=1e-5)
    # Same weights after one step means the same gradients: the per-replica losses are
    # scaled so that the summed gradient equals one device on the global batch.
    moved = False
    for a, b, w0 in zip(mirrored.get_weights(), reference.get_weights(), initial):
        np.testing.assert_allclose(a, b, atol=1e-5)
        moved = moved or not np.allclose(a, w0)
    assert moved


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_policy(request):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(request.param)
    try:
        yield request.param
    finally:
        keras.config.set_dtype_policy(previous)


def test_mixed_precision_step(mixed_policy):
    x, y = _views()
    model = _model(encoder=_tiny_encoder(batch_norm=True))
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    if mixed_policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    out = model(x[:, 0])
    assert out["embeddings"].dtype == mixed_policy.split("_")[1]
    assert model.encoder.layers[2].kernel.dtype == "float32"  # float32 variables
    assert out["projections"].dtype == "float32"
    np.testing.assert_allclose(np.linalg.norm(out["projections"], axis=-1), 1.0, atol=1e-3)


def test_jit_compile_step():
    x, y = _views()
    model = _model(encoder=_tiny_encoder())
    model.compile(optimizer=keras.optimizers.SGD(0.1), jit_compile=True)
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_call_outputs_and_round_trip(tmp_path):
    x, _ = _views(batch=2)
    model = _model()
    out = model(x[:, 0])
    assert out["embeddings"].shape == (2, 32)
    assert out["projections"].shape == (2, 8)
    assert out["probabilities"].shape == (2, 3)
    np.testing.assert_allclose(np.sum(out["probabilities"], axis=-1), 1.0, atol=1e-6)
    harness.assert_config_round_trip(model)
    restored = harness.assert_keras_round_trip(model, x[:, 0], tmp_path)
    assert isinstance(restored, SupConModel)
    assert restored.contrastive_loss.temperature == 0.5


def test_bad_inputs():
    encoder = ResNet(18, 4, (SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="num_classes"):
        SupConModel(encoder, num_classes=1)
    with pytest.raises(ValueError, match="encoder"):
        SupConModel("resnet")
    with pytest.raises(ValueError, match="queue_size=0"):
        SupConModel(encoder, queue_size=0)
    model = _model(encoder=encoder)
    model.compile(optimizer="sgd")
    x, y = _views()
    with pytest.raises(ValueError, match=r"expects batches"):
        model.fit(x[:, 0], y, batch_size=8, verbose=0)


@pytest.mark.slow
def test_resnet_fit_with_unknown_image_size_and_uint8_views():
    x, y = _views()

    def gen():
        yield x.astype("uint8"), y

    dataset = tf.data.Dataset.from_generator(
        gen,
        output_signature=(
            tf.TensorSpec([None, 2, None, None, 3], tf.uint8),
            tf.TensorSpec([None], tf.int32),
        ),
    )
    model = SupConModel(ResNet(18, 4), ProjectionHead(8), num_classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    history = model.fit(dataset, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
