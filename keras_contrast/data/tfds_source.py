"""`tfds_source`: TensorFlow Datasets by name, with a clear error when the data is missing."""

import os
import re

import tensorflow as tf

from keras_contrast.data import _utils
from keras_contrast.data.info import DatasetInfo, DatasetNotPreparedError

_LOCAL_OPTIONS = (
    "Without TFDS data, use a local source instead: 'folder:/path/to/images' (ImageFolder "
    "layout, class_name/*.jpg; e.g. the project's CIFAR-10 zip unzipped, with "
    "validation_per_class=500) or 'cifar10_sample' (real CIFAR-10 images shipped with "
    "keras-contrast)."
)


def _not_prepared_message(name, builder, data_dir, download_error=None):
    shown_dir = data_dir if data_dir is not None else builder.data_dir_root
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    lines = [
        f"TFDS dataset {name!r} is not prepared in data_dir={shown_dir!r} "
        f"(no dataset_info.json in {os.fspath(builder.data_path)!r})"
        + (" and downloading it failed." if download_error else ", and download=False."),
    ]
    if download_error is not None:
        lines.append(f"The download error was: {type(download_error).__name__}: "
                     f"{str(download_error)[:500]}")
    lines += [
        "To use it offline, prepare it on a machine with internet access and copy the "
        "data directory here:",
        f"    tfds build {name} --data_dir=DIR",
        f"  or in Python: tfds.builder({name!r}, data_dir=DIR).download_and_prepare()",
        f"then copy DIR (it holds {builder.name}/{builder.version}/...) to this machine and "
        "pass data_dir=DIR (or set TFDS_DATA_DIR=DIR).",
    ]
    if manual:
        lines.append(
            f"{name!r} needs files you download yourself into a manual directory (see "
            "its TFDS page); with them on this machine, prepare it without internet: "
            f"tfds build {name} --manual_dir=MANUAL_DIR --data_dir=DIR, or pass "
            "download=True, manual_dir=MANUAL_DIR here."
        )
    elif download_error is None:
        lines.append("To download and prepare it now (needs internet), pass download=True.")
    lines.append(_LOCAL_OPTIONS)
    return "\n".join(lines)


def _split_names(split):
    """Base split names in a TFDS split string: 'train[:10%]+test' -> ['train', 'test']."""
    return [re.sub(r"\[.*\]$", "", part.strip()) for part in split.split("+")]


def tfds_source(
    name,
    split="train",
    *,
    data_dir=None,
    download=False,
    manual_dir=None,
    image_size=None,
    shuffle_files=False,
    seed=None,
    input_context=None,
    image_key="image",
    label_key="label",
):
    """A TensorFlow Datasets dataset as a `tf.data.Dataset` of `(image, label)`.

    Any TFDS image-classification dataset works: `"cifar10"`, `"cifar100"`, `"stl10"`
    (its `"unlabelled"` split has label `-1`), `"imagenet2012"`,
    `"imagenet_resized/64x64"`, `"mnist"` (grayscale, converted to RGB) ...

    Nothing is downloaded unless `download=True`: the builder's prepared files are looked
    for in `data_dir` first, and a missing dataset raises `DatasetNotPreparedError` (a
    `ValueError`) at once, with instructions to prepare it offline, instead of a long
    download attempt and a stack trace from inside TFDS.

    Args:
        name: the TFDS name, with an optional config and version (`"imagenet_resized/64x64"`).
        split: a TFDS split string (`"train"`, `"test"`, `"train[:90%]"`, `"unlabelled"`).
            Defaults to `"train"`.
        data_dir: the TFDS data directory. Defaults to `None` (TFDS's default:
            `$TFDS_DATA_DIR` or `~/tensorflow_datasets`).
        download: whether to download and prepare the dataset when it is not prepared
            (needs internet, except for manual datasets given `manual_dir`). Defaults to
            `False`.
        manual_dir: folder holding manually downloaded files (e.g. the ImageNet tars),
            used when `download=True`. Defaults to `None`.
        image_size: `None` to keep the images' size, or an int / `(height, width)` to
            resize to (bilinear, antialiased, back to `uint8`). Defaults to `None`.
        shuffle_files: whether TFDS shuffles the order of its record files (useful for
            large datasets; examples are shuffled in `build_pipeline`). Defaults to
            `False`.
        seed: seed of the file shuffle. Defaults to `None`.
        input_context: a `tf.distribute.InputContext`; when given, TFDS reads only this
            input pipeline's files (needs at least as many files as pipelines). Leave it
            `None` when `build_pipeline` shards (the default there). Defaults to `None`.
        image_key: the image feature. Defaults to `"image"`.
        label_key: the `ClassLabel` feature. Defaults to `"label"`.

    Returns:
        A tuple `(dataset, info)`: `dataset` yields `(image, label)`, `image` `uint8`
        `[height, width, 3]` and `label` `int32`; `info` is a `DatasetInfo`.

    Raises:
        DatasetNotPreparedError: the data is not prepared and `download=False`, or the
            download failed.
        ValueError: an unknown dataset, split or feature.

    Example:

    ```python
    dataset, info = tfds_source("cifar10", "train", data_dir="/data/tfds")
    info.num_classes, info.image_shape  # (10, (32, 32, 3))
    ```
    """
    import tensorflow_datasets as tfds  # Imported lazily: slow, and only needed here.

    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"`split` must be a non-empty string. Received: split={split!r}")
    image_size = _utils.check_image_size(image_size)
    _utils.check_input_context(input_context)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise ValueError(
            f"`name` is not a TFDS dataset. Received: name={name!r}. {_LOCAL_OPTIONS}"
        ) from None
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"`name` is not a valid TFDS dataset or config. Received: name={name!r} "
            f"({type(error).__name__}: {str(error)[:300]})"
        ) from None

    if not builder.is_prepared():
        if not download:
            raise DatasetNotPreparedError(_not_prepared_message(name, builder, data_dir))
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        try:
            builder.download_and_prepare(download_config=config)
        except Exception as error:  # Any download or preparation failure.
            raise DatasetNotPreparedError(
                _not_prepared_message(name, builder, data_dir, download_error=error)
            ) from error

    features = builder.info.features
    if image_key not in features or not isinstance(features[image_key], tfds.features.Image):
        raise ValueError(
            f"`image_key` must name an Image feature of {name!r} (features: "
            f"{list(features.keys())}). Received: image_key={image_key!r}"
        )
    if label_key not in features or not isinstance(
        features[label_key], tfds.features.ClassLabel
    ):
        raise ValueError(
            f"`label_key` must name a ClassLabel feature of {name!r} (features: "
            f"{list(features.keys())}). Received: label_key={label_key!r}"
        )
    available = tuple(builder.info.splits.keys())
    if available:  # Known once prepared (mocked builders may not list them).
        unknown = [s for s in _split_names(split) if s not in available]
        if unknown:
            raise ValueError(
                f"`split` must name splits of {name!r}, one of {available}. "
                f"Received: split={split!r}"
            )
    read_config = tfds.ReadConfig(
        shuffle_seed=seed, input_context=input_context, try_autocache=False
    )
    dataset = builder.as_dataset(
        split=split, shuffle_files=shuffle_files, read_config=read_config
    )

    def to_pair(example):
        image = _utils.to_uint8_rgb(example[image_key], image_size)
        return image, tf.cast(example[label_key], tf.int32)

    dataset = dataset.map(to_pair, num_parallel_calls=_utils.AUTOTUNE)
    label_feature = features[label_key]
    image_shape = features[image_key].shape
    try:
        num_examples = int(builder.info.splits[split].num_examples)
    except Exception:  # Unknown for mocked or partially described builders.
        num_examples = None
    info = DatasetInfo(
        name=name,
        split=split,
        num_classes=int(label_feature.num_classes),
        class_names=tuple(label_feature.names),
        image_shape=(*(image_size or tuple(image_shape[:2])), 3),
        num_examples=num_examples,
        splits=available,
    )
    return dataset, info
