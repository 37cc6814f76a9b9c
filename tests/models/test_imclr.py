import keras
import numpy as np
import pytest

from keras_contrast.models.imclr import ImCLRClassifier, self_pair
from tests import harness


def _classifier(shape):
    return keras.Sequential([
        keras.Input(shape),
        keras.layers.Conv2D(2, 3),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])


@pytest.mark.parametrize(
    "axis,shape,np_axis",
    [("width", (8, 16, 3), 2), ("height", (16, 8, 3), 1), ("channels", (8, 8, 6), 3)],
)
def test_self_pairs_along_axis(axis, shape, np_axis):
    classifier = _classifier(shape)
    model = ImCLRClassifier(classifier, axis=axis)
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = classifier(np.concatenate([x, x], axis=np_axis))
    np.testing.assert_allclose(model(x), expected, atol=1e-5)
    np.testing.assert_array_equal(self_pair(x, axis), np.concatenate([x, x], axis=np_axis))


def test_round_trips(tmp_path):
    model = ImCLRClassifier(_classifier((8, 16, 3)), axis="width")
    x = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    harness.assert_config_round_trip(model)
    restored = harness.assert_keras_round_trip(model, x, tmp_path)
    assert restored.axis == "width"


def test_fit_on_single_images():
    model = ImCLRClassifier(_classifier((8, 16, 3)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.zeros((4, 8, 8, 3), "float32")
    model.fit(x, np.array([0, 1, 2, 0]), verbose=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="axis='depth'"):
        ImCLRClassifier(_classifier((8, 16, 3)), axis="depth")
    with pytest.raises(ValueError, match="classifier"):
        ImCLRClassifier(None)
    with pytest.raises(ValueError, match=r"images.shape=\(8, 8, 3\)"):
        self_pair(np.zeros((8, 8, 3), "float32"))
