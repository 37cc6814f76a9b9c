import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models.backbones import ApplicationBackbone
from keras_contrast.models.resnet import ResNet
from tests import harness


def _conv_bn(cin, cout, k):
    return k * k * cin * cout + 2 * cout  # conv without bias + BN gamma/beta


def _expected_trainable(depth, width):
    """Trainable parameters of the CIFAR ResNet counted from the architecture by hand."""
    bottleneck = depth == 50
    repeats = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    total = _conv_bn(3, width, 3)
    cin = width
    for stage, count in enumerate(repeats):
        planes = width * 2**stage
        for index in range(count):
            stride = 2 if stage > 0 and index == 0 else 1
            cout = 4 * planes if bottleneck else planes
            if bottleneck:
                total += _conv_bn(cin, planes, 1) + _conv_bn(planes, planes, 3)
                total += _conv_bn(planes, cout, 1)
            else:
                total += _conv_bn(cin, planes, 3) + _conv_bn(planes, planes, 3)
            if stride != 1 or cin != cout:
                total += _conv_bn(cin, cout, 1)
            cin = cout
    return total


def _trainable(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def test_resnet18_width64_parameter_count():
    model = ResNet(depth=18, width=64, image_shape=(32, 32, 3))
    assert _trainable(model) == _expected_trainable(18, 64)
    # SupContrast's resnet18 (no fc) has 11,168,832 parameters: "about 11.2M".
    assert 11.1e6 < _trainable(model) < 11.25e6
    assert model.output.shape == (None, 512)


@pytest.mark.parametrize("depth,dim", [(18, 32), (34, 32), (50, 128)])
def test_shapes_and_counts(depth, dim):
    model = ResNet(depth=depth, width=4, image_shape=(16, 16, 3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    assert model(x).shape == (2, dim)
    assert model.feature_dim == dim
    assert _trainable(model) == _expected_trainable(depth, 4)
    # No max-pool, stride-1 stem: the last stage sees 16 / 8 = 2x2 maps.
    assert model.get_layer("avg_pool").input.shape[1:3] == (2, 2)


def test_rescaling_and_dynamic_size():
    model = ResNet(18, 4)
    scaled = ResNet(18, 4, include_rescaling=False)
    scaled.set_weights(model.get_weights())
    x = np.random.default_rng(1).uniform(0, 255, (2, 24, 20, 3)).astype("float32")
    np.testing.assert_allclose(model(x), scaled(x / 255.0), atol=1e-5)


def test_round_trips(tmp_path):
    model = ResNet(18, 4, (16, 16, 3), name="enc")
    harness.assert_config_round_trip(model)
    x = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype("float32")
    # Moving statistics away from their initial values, so that they must be restored.
    rng = np.random.default_rng(1)
    for weight in model.non_trainable_weights:
        weight.assign(rng.uniform(0.5, 1.5, weight.shape).astype("float32"))
    restored = harness.assert_keras_round_trip(model, x, tmp_path, atol=1e-5)
    assert isinstance(restored, ResNet) and restored.name == "enc"


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth=101"):
        ResNet(depth=101)
    with pytest.raises(ValueError, match="width=0"):
        ResNet(width=0)
    with pytest.raises(ValueError, match="image_shape"):
        ResNet(image_shape=(32, 32))
    with pytest.raises(ValueError, match="application='NotAModel'"):
        ApplicationBackbone("NotAModel")
    with pytest.raises(ValueError, match="pooling"):
        ApplicationBackbone("MobileNetV2", image_shape=(32, 32, 3), pooling="none")


@pytest.mark.slow
def test_application_backbone(tmp_path):
    model = ApplicationBackbone("MobileNetV2", image_shape=(32, 32, 3))
    x = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert model(x).shape == (2, model.feature_dim)
    # The application's own preprocessing is inside: 0-255 in, [-1, 1] to the network.
    base = model.layers[-1]
    np.testing.assert_allclose(model(x), base(x / 127.5 - 1.0), atol=1e-5)
    harness.assert_config_round_trip(model)
    harness.assert_keras_round_trip(model, x, tmp_path, atol=1e-5)
    resnet50 = ApplicationBackbone("ResNet50", image_shape=(32, 32, 3))
    assert resnet50.feature_dim == 2048


def test_synchronized_batch_norm_uses_the_global_batch():
    """Under 2 replicas, synchronized BN moving statistics equal one device's on the global
    batch; per-replica BN gives each replica its own."""
    x = np.random.default_rng(0).uniform(0, 255, (8, 8, 8, 3)).astype("float32")
    x[4:] *= 0.2  # the two replicas see different statistics

    def moving_mean_after_one_step(strategy, synchronized):
        with strategy.scope():
            model = ResNet(18, 2, (8, 8, 3), synchronized_batch_norm=synchronized)
        data = tf.data.Dataset.from_tensor_slices(x).batch(8)
        batch = next(iter(strategy.experimental_distribute_dataset(data)))
        tf.function(lambda b: strategy.run(lambda t: model(t, training=True), args=(b,)))(batch)
        bn = model.get_layer("stem_bn")
        return [v.numpy() for v in strategy.experimental_local_results(bn.moving_mean)]

    keras.utils.set_random_seed(1)
    (single,) = moving_mean_after_one_step(tf.distribute.get_strategy(), False)
    keras.utils.set_random_seed(1)
    synced = moving_mean_after_one_step(harness.mirrored_strategy(), True)
    for value in synced:
        np.testing.assert_allclose(value, single, rtol=1e-4, atol=1e-5)
    keras.utils.set_random_seed(1)
    local = moving_mean_after_one_step(harness.mirrored_strategy(), False)
    assert np.max(np.abs(local[0] - single)) > 1e-3
