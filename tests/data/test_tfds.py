"""`tfds_source` and `load(<TFDS name>)`, offline: `tfds.testing.mock_data` and empty dirs."""

import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_contrast import data


def _write_prepared_metadata(data_dir, name, split_sizes):
    """Writes the metadata TFDS leaves after preparing `name` (a dataset or a
    `dataset/config`; no records)."""
    builder = tfds.builder(name, data_dir=data_dir)
    splits = [
        tfds.core.SplitInfo(
            name=split,
            shard_lengths=[size],
            num_bytes=0,
            filename_template=tfds.core.ShardedFileTemplate(
                data_dir=builder.data_path,
                template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_INDEX}",
                dataset_name=builder.name,  # without the config ("cifar10_corrupted")
                split=split,
                filetype_suffix="tfrecord",
            ),
        )
        for split, size in split_sizes.items()
    ]
    builder.info.set_splits(tfds.core.SplitDict(splits))
    builder.data_path.mkdir(parents=True, exist_ok=True)
    builder.info.write_to_directory(builder.data_path)


def test_mocked_cifar10_passes_through_with_metadata():
    with tfds.testing.mock_data(num_examples=7):
        raw = tfds.builder("cifar10").as_dataset(split="train")
        expected = [(ex["image"].numpy(), int(ex["label"])) for ex in raw]
        # download=True: the mock makes download_and_prepare a no-op.
        dataset, info = data.tfds_source("cifar10", "train", download=True)
        actual = [(x.numpy(), int(y)) for x, y in dataset]
    assert dataset.element_spec == (
        tf.TensorSpec((32, 32, 3), tf.uint8),
        tf.TensorSpec((), tf.int32),
    )
    assert len(actual) == 7
    for (x, y), (ex, ey) in zip(actual, expected):  # The mock repeats its examples.
        np.testing.assert_array_equal(x, ex)
        assert y == ey and 0 <= y < 10
    assert info.name == "cifar10" and info.split == "train"
    assert info.num_classes == 10 and len(info.class_names) == 10
    assert info.image_shape == (32, 32, 3)


def test_prepared_data_dir_is_read_without_download(tmp_path):
    _write_prepared_metadata(tmp_path, "cifar10", {"train": 50000, "test": 10000})
    with tfds.testing.mock_data(num_examples=5, data_dir=str(tmp_path)):
        dataset, info = data.load("cifar10", "test", data_dir=str(tmp_path))
        assert len(list(dataset)) == 5
        assert info.num_examples == 10000 and info.splits == ("train", "test")
        with pytest.raises(ValueError, match="one of \\('train', 'test'\\)"):
            data.load("cifar10", "validation", data_dir=str(tmp_path))
        sliced, info = data.load("cifar10", "train[:10%]+test", data_dir=str(tmp_path))
        assert info.num_examples == 15000


@pytest.mark.parametrize(
    "name, split, shape",
    [("stl10", "unlabelled", (96, 96, 3)), ("imagenet_resized/64x64", "train", (64, 64, 3)),
     ("mnist", "train", (28, 28, 3))],
)
def test_mocked_other_datasets(name, split, shape):
    with tfds.testing.mock_data(num_examples=3):
        dataset, info = data.tfds_source(name, split, download=True)
        images = [x for x, _ in dataset]
    assert info.image_shape == shape and len(images) == 3
    assert all(x.shape == shape and x.dtype == tf.uint8 for x in images)


def test_mocked_imagenet_resized_on_load():
    with tfds.testing.mock_data(num_examples=2):
        dataset, info = data.load("imagenet2012", "validation", download=True, image_size=24)
        images = [x for x, _ in dataset]
    assert info.num_classes == 1000 and info.image_shape == (24, 24, 3)
    assert all(x.shape == (24, 24, 3) for x in images)


@pytest.mark.parametrize("name", ["cifar10", "imagenet2012", "stl10"])
def test_not_prepared_gives_clear_error_fast(tmp_path, name):
    start = time.monotonic()
    with pytest.raises(data.DatasetNotPreparedError) as error:
        data.load(name, "train", data_dir=str(tmp_path))
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert isinstance(error.value, ValueError)
    assert f"{name!r} is not prepared" in message and str(tmp_path) in message
    assert "download_and_prepare" in message and "tfds build" in message
    assert "folder:" in message and "cifar10_sample" in message
    if name == "imagenet2012":
        assert "manual_dir" in message
    else:
        assert "download=True" in message


def test_failed_download_is_wrapped(tmp_path, monkeypatch):
    def fail(self, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(data.DatasetNotPreparedError, match="network unreachable"):
        data.tfds_source("cifar10", data_dir=str(tmp_path), download=True)


def test_bad_names_and_arguments(tmp_path):
    with pytest.raises(ValueError, match="`name` is not a TFDS dataset"):
        data.load("no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="`name` must be a non-empty string"):
        data.load("")
    with pytest.raises(ValueError, match="`validation_per_class` does not apply to TFDS"):
        data.load("cifar10", validation_per_class=5)
    with pytest.raises(ValueError, match="`download` does not apply to the cifar10_sample"):
        data.load("cifar10_sample", download=True)
    with pytest.raises(ValueError, match="`image_key` must name an Image feature"):
        with tfds.testing.mock_data(num_examples=1):
            data.tfds_source("cifar10", image_key="picture", download=True)
