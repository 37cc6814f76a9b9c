"""`load`: one entry point for every source, driven by a dataset name string."""

from keras_contrast.data import _utils
from keras_contrast.data.folder import folder_source
from keras_contrast.data.sample import cifar10_sample
from keras_contrast.data.tfds_source import tfds_source

FOLDER_PREFIX = "folder:"
SAMPLE_NAME = "cifar10_sample"


def load(
    name,
    split="train",
    *,
    data_dir=None,
    download=False,
    manual_dir=None,
    validation_per_class=None,
    validation_fraction=None,
    image_size=None,
    shuffle_files=False,
    seed=None,
    input_context=None,
    on_bad_image=None,
):
    """Loads a dataset by name: the shipped sample, an image folder, or a TFDS dataset.

    This is what the recipes' `--dataset` flag calls:

    * `"cifar10_sample"`: real CIFAR-10 images shipped with the package (splits `"train"`,
      5,000 images, and `"validation"`, 1,000); works offline. See `cifar10_sample`.
    * `"folder:/path"`: an ImageFolder-layout folder (`/path/class_name/*.jpg`), splits
      `"train"`, `"validation"` and `"all"`. See `folder_source`.
    * anything else: a TFDS name (`"cifar10"`, `"cifar100"`, `"stl10"`, `"imagenet2012"`,
      `"imagenet_resized/64x64"` ...) with a TFDS split string. Not downloaded unless
      `download=True`; a dataset that is not prepared in `data_dir` raises
      `DatasetNotPreparedError` with instructions. See `tfds_source`.

    Arguments that do not apply to the chosen source must stay at their defaults (a
    `ValueError` says which), so a misspelt dataset name cannot silently ignore them.

    Args:
        name: the dataset name, as above.
        split: the split. Defaults to `"train"`.
        data_dir: TFDS data directory (TFDS only). Defaults to `None` (TFDS's default).
        download: whether TFDS may download and prepare (TFDS only). Defaults to `False`.
        manual_dir: folder of manually downloaded files (TFDS only). Defaults to `None`.
        validation_per_class: images per class held out as the folder's validation split
            (folder only). Defaults to `None`.
        validation_fraction: fraction per class held out instead (folder only). Defaults
            to `None`.
        image_size: an int or `(height, width)` to resize every image to (`uint8`), or
            `None` to keep the sizes. Defaults to `None`.
        shuffle_files: whether to shuffle files before reading (folder and TFDS). Defaults
            to `False`.
        seed: seed of the file shuffle (folder and TFDS). Defaults to `None`.
        input_context: a `tf.distribute.InputContext` to shard at the source (before
            decoding; cheaper for large datasets). Leave `None` when `build_pipeline`
            shards, which is its default: sharding twice drops data. Defaults to `None`.
        on_bad_image: `"error"` or `"skip"` for unreadable image files (folder only; see
            `folder_source`). Defaults to `None` (the folder source's `"error"`).

    Returns:
        A tuple `(dataset, info)`: `dataset` yields `(image, label)`, `image` `uint8`
        `[height, width, 3]` and `label` `int32`; `info` is a `DatasetInfo`
        (`num_classes`, `class_names`, `image_shape`, `num_examples`, `splits`).

    Example:

    ```python
    train, info = load("cifar10_sample", "train")
    val, _ = load("folder:/data/cifar10", "validation", validation_per_class=500)
    test, _ = load("cifar10", "test", data_dir="/data/tfds")
    ```
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string. Received: name={name!r}")

    def reject(source, **kwargs):
        for arg, value in kwargs.items():
            if value is not None and value is not False:
                raise ValueError(
                    f"`{arg}` does not apply to {source} datasets. "
                    f"Received: name={name!r}, {arg}={value!r}"
                )

    if name == SAMPLE_NAME:
        reject(
            "the cifar10_sample",
            data_dir=data_dir,
            download=download,
            manual_dir=manual_dir,
            validation_per_class=validation_per_class,
            validation_fraction=validation_fraction,
            shuffle_files=shuffle_files,
            seed=seed,
            on_bad_image=on_bad_image,
        )
        return cifar10_sample(split, image_size=image_size, input_context=input_context)
    if name.startswith(FOLDER_PREFIX):
        path = name[len(FOLDER_PREFIX) :]
        if not path:
            raise ValueError(
                f"`name` must be 'folder:' followed by a path. Received: name={name!r}"
            )
        reject("folder", data_dir=data_dir, download=download, manual_dir=manual_dir)
        return folder_source(
            path,
            split,
            validation_per_class=validation_per_class,
            validation_fraction=validation_fraction,
            image_size=image_size,
            shuffle_files=shuffle_files,
            seed=seed,
            input_context=input_context,
            on_bad_image=on_bad_image or "error",
        )
    reject(
        "TFDS",
        validation_per_class=validation_per_class,
        validation_fraction=validation_fraction,
        on_bad_image=on_bad_image,
    )
    _utils.check_input_context(input_context)
    return tfds_source(
        name,
        split,
        data_dir=data_dir,
        download=download,
        manual_dir=manual_dir,
        image_size=image_size,
        shuffle_files=shuffle_files,
        seed=seed,
        input_context=input_context,
    )
