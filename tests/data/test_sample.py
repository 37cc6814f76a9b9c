"""The shipped CIFAR-10 sample: content, balance, real images, agreement with the zip."""

import io
import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import data

ZIP = "/work/shared/data/cifar10-train.zip"


@pytest.mark.parametrize("split, per_class", [("train", 500), ("validation", 100)])
def test_shapes_dtypes_balance(split, per_class):
    dataset, info = data.cifar10_sample(split)
    assert info.num_classes == 10 and len(info.class_names) == 10
    assert info.class_names[0] == "airplane" and info.class_names[-1] == "truck"
    assert info.image_shape == (32, 32, 3)
    assert info.num_examples == 10 * per_class
    assert dataset.element_spec[0].shape == (32, 32, 3)
    assert dataset.element_spec[0].dtype == tf.uint8
    assert dataset.element_spec[1].dtype == tf.int32
    labels = np.array([int(y) for _, y in dataset])
    assert labels.min() == 0 and labels.max() == 9
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)


def test_images_are_real():
    images, labels, _ = data.cifar10_sample_arrays("train")
    # Not constant, not noise: natural images vary within each image and are spatially
    # smooth (neighbouring pixels are far more alike than random pairs).
    per_image_std = images.reshape(len(images), -1).std(axis=1)
    assert (per_image_std > 5).mean() > 0.99
    x = images.astype(np.float32)
    neighbour = np.abs(x[:, :, 1:] - x[:, :, :-1]).mean()
    shuffled = np.abs(x - x[np.random.default_rng(0).permutation(len(x))]).mean()
    assert neighbour < 0.5 * shuffled
    # Class means differ (e.g. ships/airplanes are bluer than frogs/deer).
    means = np.stack([x[labels == c].mean(axis=(0, 1, 2)) for c in range(10)])
    assert np.ptp(means[:, 2] - means[:, 0]) > 10


def test_train_and_validation_are_disjoint():
    _, _, train_files = data.cifar10_sample_arrays("train")
    _, _, val_files = data.cifar10_sample_arrays("validation")
    assert len(set(train_files)) == 5000 and len(set(val_files)) == 1000
    assert not set(train_files) & set(val_files)
    assert "airplane/0000.jpg" in set(train_files) and "truck/4999.jpg" in set(val_files)


@pytest.mark.skipif(not os.path.exists(ZIP), reason="the project's CIFAR-10 zip is absent")
def test_pixels_match_the_source_jpegs():
    images, labels, files = data.cifar10_sample_arrays("validation")
    archive = zipfile.ZipFile(ZIP)
    for index in [0, 137, 999]:
        raw = archive.read(str(files[index]))
        expected = tf.io.decode_jpeg(raw, channels=3).numpy()
        np.testing.assert_array_equal(images[index], expected)
        from PIL import Image  # An independent decoder agrees up to IDCT rounding.

        pil = np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")).astype(int)
        assert np.abs(pil - images[index].astype(int)).mean() < 2


def test_arrays_are_read_only_and_split_checked():
    images, _, _ = data.cifar10_sample_arrays("train")
    with pytest.raises(ValueError):
        images[0, 0, 0, 0] = 1
    with pytest.raises(ValueError, match="`split` must be one of"):
        data.cifar10_sample("test")


def test_resize():
    dataset, info = data.cifar10_sample("validation", image_size=48)
    assert info.image_shape == (48, 48, 3)
    image, _ = next(iter(dataset))
    assert image.shape == (48, 48, 3) and image.dtype == tf.uint8


def test_sample_file_is_small():
    path = os.path.join(os.path.dirname(data.__file__), "cifar10_sample.npz")
    assert os.path.getsize(path) < 8 * 2**20
