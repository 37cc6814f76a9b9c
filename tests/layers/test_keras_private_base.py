"""Guard for the one private Keras API the layers rely on.

Seven layers subclass `keras.src.layers.preprocessing.image_preprocessing.
base_image_preprocessing_layer.BaseImagePreprocessingLayer`: Keras exports no public base that
gives `get_random_transformation` / `transform_images` replay, tf.data support and the
backend switch. `setup.cfg` therefore pins the Keras minor version these tests ran on, and this
test imports every layer and runs it eagerly and in `tf.data`, so that a Keras release that
moves or changes the class fails here, not in users' pipelines.
"""

import configparser
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast import layers as L

LAYERS = {
    "AutoAugment": lambda: L.AutoAugment(cutout_size=4, seed=0),
    "ColorJitter": lambda: L.ColorJitter(seed=0),
    "ImCLRPairing": lambda: L.ImCLRPairing(num_classes=3, seed=0),
    "MixCoMixing": lambda: L.MixCoMixing(seed=0),
    "PerImageGaussianBlur": lambda: L.PerImageGaussianBlur(rate=1.0, seed=0),
    "RandomResizedCrop": lambda: L.RandomResizedCrop(8, 8, seed=0),
    "StrongAugment": lambda: L.StrongAugment(seed=0),
}


def _data(name):
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)).astype("float32")
    if name == "ImCLRPairing":
        return {"images": images, "labels": np.array([0, 1, 2, 0])}
    return images


def test_every_subclass_of_the_private_base_is_covered():
    subclasses = {
        name for name in dir(L)
        if isinstance(getattr(L, name), type)
        and issubclass(getattr(L, name), BaseImagePreprocessingLayer)
    }
    assert subclasses == set(LAYERS)


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_runs_eagerly_and_in_tf_data(name):
    layer = LAYERS[name]()
    eager = layer(_data(name), training=True)
    ds = tf.data.Dataset.from_tensors(_data(name)).map(lambda x: layer(x, training=True))
    in_data = next(iter(ds))
    for out in (eager, in_data):
        images = out["images"] if isinstance(out, dict) else out
        assert np.all(np.isfinite(np.asarray(images)))


def test_setup_pins_the_tested_keras_minor_version():
    config = configparser.ConfigParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    config.read(os.path.join(root, "setup.cfg"))
    requirements = config["options"]["install_requires"]
    major, minor = keras.__version__.split(".")[:2]
    assert f"keras>={major}.{minor},<{major}.{int(minor) + 1}" in requirements
