import keras
import numpy as np
import pytest

from keras_contrast.models.heads import ProjectionHead
from tests import harness


def _x(batch=4, dim=12):
    return np.random.default_rng(0).normal(size=(batch, dim)).astype("float32")


def test_default_is_supcon_mlp_with_unit_norm_output():
    head = ProjectionHead()
    z = head(_x())
    assert z.shape == (4, 128)
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, atol=1e-5)
    # Linear(d, d) - ReLU - Linear(d, 128).
    assert [tuple(w.shape) for w in head.weights] == [(12, 12), (12,), (12, 128), (128,)]
    hidden, out = head.hidden_layers[0][0], head.output_layer
    x = _x()
    expected = np.maximum(x @ hidden.kernel.numpy() + hidden.bias.numpy(), 0)
    expected = expected @ out.kernel.numpy() + out.bias.numpy()
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    np.testing.assert_allclose(z, expected, atol=1e-5)


def test_linear_unnormalized_and_batch_norm():
    linear = ProjectionHead(6, kind="linear", normalize=False)
    z = linear(_x())
    assert [tuple(w.shape) for w in linear.weights] == [(12, 6), (6,)]
    assert not np.allclose(np.linalg.norm(z, axis=-1), 1.0)
    bn = ProjectionHead(8, hidden_dims=[16, 10], use_batch_norm=True)
    z = bn(_x(), training=True)
    assert z.shape == (4, 8)
    np.testing.assert_allclose(np.linalg.norm(z, axis=-1), 1.0, atol=1e-5)
    assert len(bn.trainable_weights) == 1 + 2 + 1 + 2 + 2  # no hidden biases with BN
    assert len(bn.non_trainable_weights) == 4


def test_round_trips(tmp_path):
    head = ProjectionHead(8, hidden_dims=[16], use_batch_norm=True)
    harness.assert_config_round_trip(head)
    model = keras.Sequential([keras.Input((12,)), head])
    harness.assert_keras_round_trip(model, _x(), tmp_path)


def test_bad_arguments():
    with pytest.raises(ValueError, match="output_dim=0"):
        ProjectionHead(0)
    with pytest.raises(ValueError, match="kind='conv'"):
        ProjectionHead(kind="conv")
    with pytest.raises(ValueError, match="hidden_dims"):
        ProjectionHead(kind="linear", hidden_dims=[4])
    with pytest.raises(ValueError, match="hidden_dims"):
        ProjectionHead(hidden_dims=[4, -1])
    with pytest.raises(ValueError, match="input_shape"):
        ProjectionHead()(np.zeros((2, 3, 4), "float32"))
