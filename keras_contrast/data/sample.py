"""`cifar10_sample`: real CIFAR-10 images shipped inside the package, for offline use."""

import functools
import importlib.resources

import numpy as np
import tensorflow as tf

from keras_contrast.data import _utils
from keras_contrast.data.info import DatasetInfo

SAMPLE_FILE = "cifar10_sample.npz"
SAMPLE_SPLITS = ("train", "validation")


@functools.lru_cache(maxsize=None)
def _load_part(split):
    resource = importlib.resources.files("keras_contrast.data").joinpath(SAMPLE_FILE)
    with resource.open("rb") as f, np.load(f) as npz:
        buffer = npz[f"{split}_jpeg"]
        offsets = npz[f"{split}_offsets"]
        labels = npz[f"{split}_labels"].astype(np.int32)
        files = npz[f"{split}_files"]
        class_names = tuple(str(c) for c in npz["class_names"])
    blobs = [buffer[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(labels))]
    decoded = (
        tf.data.Dataset.from_tensor_slices(blobs)
        .map(lambda b: tf.io.decode_jpeg(b, channels=3), num_parallel_calls=_utils.AUTOTUNE)
        .batch(len(blobs))
    )
    images = decoded.get_single_element().numpy()
    for array in (images, labels, files):
        array.flags.writeable = False
    return images, labels, files, class_names


def cifar10_sample_arrays(split="train"):
    """Returns the shipped CIFAR-10 sample as NumPy arrays.

    The sample holds real CIFAR-10 training images (JPEG-encoded, as in the project's
    ImageFolder copy of the split): for each of the 10 classes, the `train` part has the
    first 500 files in sorted order (`0000.jpg` ... `0499.jpg`) and the `validation` part the
    last 100 (`4900.jpg` ... `4999.jpg`), so the parts are disjoint and class-balanced. The
    JPEG bytes are decoded with `tf.io.decode_jpeg` on first use and kept in memory
    (read-only arrays). `keras_contrast/data/make_cifar10_sample.py` rebuilds the file.

    Args:
        split: `"train"` (5,000 images) or `"validation"` (1,000 images). Defaults to
            `"train"`.

    Returns:
        A tuple `(images, labels, files)`: `images` `uint8` `[n, 32, 32, 3]`, `labels`
        `int32` `[n]` in `[0, 10)`, `files` the source file names (`"cat/0042.jpg"`).

    Example:

    ```python
    images, labels, _ = cifar10_sample_arrays("validation")
    images.shape  # (1000, 32, 32, 3)
    ```
    """
    _utils.check_split_choice(split, SAMPLE_SPLITS)
    images, labels, files, _ = _load_part(split)
    return images, labels, files


def cifar10_sample(split="train", *, image_size=None, input_context=None):
    """Real CIFAR-10 images shipped with keras-contrast, as a `tf.data.Dataset`.

    Works fully offline on a fresh machine: recipes and tests use it where TFDS data cannot
    be downloaded. See `cifar10_sample_arrays` for the exact content (500 training and 100
    validation images per class, disjoint). The dataset is in class order (shuffle it in
    `build_pipeline`).

    Args:
        split: `"train"` or `"validation"`. Defaults to `"train"`.
        image_size: `None` to keep 32x32, or an int / `(height, width)` to resize to
            (bilinear, antialiased, rounded back to `uint8`). Defaults to `None`.
        input_context: a `tf.distribute.InputContext`; when given, the dataset holds only
            this input pipeline's shard (every `num_input_pipelines`-th example). Leave it
            `None` when `build_pipeline` shards (the default there). Defaults to `None`.

    Returns:
        A tuple `(dataset, info)`: `dataset` yields `(image, label)`, `image` `uint8`
        `[32, 32, 3]` and `label` `int32`; `info` is a `DatasetInfo`.

    Example:

    ```python
    dataset, info = cifar10_sample("train")
    info.num_classes, info.num_examples  # (10, 5000)
    ```
    """
    _utils.check_split_choice(split, SAMPLE_SPLITS)
    image_size = _utils.check_image_size(image_size)
    _utils.check_input_context(input_context)
    images, labels, _, class_names = _load_part(split)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    dataset = _utils.shard(dataset, input_context)
    if image_size is not None:
        dataset = _utils.resize_dataset(dataset, image_size)
    info = DatasetInfo(
        name="cifar10_sample",
        split=split,
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=(*(image_size or images.shape[1:3]), 3),
        num_examples=len(labels),
        splits=SAMPLE_SPLITS,
    )
    return dataset, info
