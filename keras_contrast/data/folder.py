"""`folder_source`: images in the ImageFolder layout (`class_name/*.jpg`)."""

import numbers
import os

import numpy as np
import tensorflow as tf

from keras_contrast.data import _utils
from keras_contrast.data.info import DatasetInfo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FOLDER_SPLITS = ("train", "validation", "all")
_PROBE_CLASSES = 16


def _list_classes(path, extensions):
    class_names = sorted(
        entry.name
        for entry in os.scandir(path)
        if entry.is_dir() and not entry.name.startswith(".")
    )
    if not class_names:
        raise ValueError(
            "`path` must hold one sub-folder of images per class (ImageFolder layout: "
            f"class_name/*.jpg). Received: path={path!r}, which has no sub-folders."
        )
    files = []
    for class_name in class_names:
        class_dir = os.path.join(path, class_name)
        names = sorted(
            entry.name
            for entry in os.scandir(class_dir)
            if entry.is_file() and entry.name.lower().endswith(extensions)
        )
        if not names:
            raise ValueError(
                f"Class folder {class_dir!r} holds no images with extensions {extensions}. "
                f"Received: path={path!r}"
            )
        files.append([os.path.join(class_dir, name) for name in names])
    return tuple(class_names), files


def _num_held_out(count, validation_per_class, validation_fraction):
    if validation_per_class is not None:
        return validation_per_class
    if validation_fraction is not None:
        return int(round(count * validation_fraction))
    return 0


def _check_validation_args(validation_per_class, validation_fraction):
    if validation_per_class is not None and validation_fraction is not None:
        raise ValueError(
            "Pass only one of `validation_per_class` and `validation_fraction`. Received: "
            f"validation_per_class={validation_per_class}, "
            f"validation_fraction={validation_fraction}"
        )
    if validation_per_class is not None and (
        not isinstance(validation_per_class, numbers.Integral)
        or isinstance(validation_per_class, bool)
        or validation_per_class < 0
    ):
        raise ValueError(
            "`validation_per_class` must be None or an int >= 0. "
            f"Received: validation_per_class={validation_per_class!r}"
        )
    if validation_fraction is not None and (
        not isinstance(validation_fraction, numbers.Real)
        or isinstance(validation_fraction, bool)
        or not 0.0 <= validation_fraction < 1.0
    ):
        raise ValueError(
            "`validation_fraction` must be None or a number in [0, 1). "
            f"Received: validation_fraction={validation_fraction!r}"
        )


def _decode(path, image_size):
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return _utils.to_uint8_rgb(image, image_size)


def _probe_shape(paths, labels):
    """The common size of the first image of (up to 16) classes, else `(None, None)`."""
    first = {}
    for path, label in zip(paths, labels):  # Grouped by class: stops after 16 classes.
        first.setdefault(label, path)
        if len(first) == _PROBE_CLASSES:
            break
    shapes = {tuple(_decode(path, None).shape[:2]) for path in first.values()}
    return shapes.pop() if len(shapes) == 1 else (None, None)


def folder_split_files(
    path, split="train", *, validation_per_class=None, validation_fraction=None,
    extensions=IMAGE_EXTENSIONS,
):
    """Lists the files and labels of one split of an ImageFolder-layout folder.

    The split rule of `folder_source`, without reading any image: classes are the sorted
    sub-folder names, files are sorted by name within each class, and the validation split
    holds the LAST `validation_per_class` (or `round(validation_fraction * count)`) files of
    each class; the training split holds the rest.

    Args:
        path: the folder (`path/class_name/image.jpg`).
        split: `"train"`, `"validation"` or `"all"`. Defaults to `"train"`.
        validation_per_class: files per class held out for validation. Defaults to `None`.
        validation_fraction: fraction of each class held out instead. Defaults to `None`.
        extensions: accepted file endings (case-insensitive). Defaults to
            `(".jpg", ".jpeg", ".png", ".bmp", ".gif")`.

    Returns:
        A tuple `(paths, labels, class_names)`: lists of file paths and int labels, and the
        tuple of class names.

    Example:

    ```python
    paths, labels, names = folder_split_files("/data/cifar10", "validation",
                                              validation_per_class=500)
    ```
    """
    if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
        raise ValueError(f"`path` must be an existing folder. Received: path={path!r}")
    _utils.check_split_choice(split, FOLDER_SPLITS)
    _check_validation_args(validation_per_class, validation_fraction)
    extensions = tuple(e.lower() for e in extensions)
    path = os.fspath(path)
    class_names, files = _list_classes(path, extensions)
    held_out = validation_per_class is not None or validation_fraction is not None
    if split == "validation" and not held_out:
        raise ValueError(
            "`split='validation'` of a folder needs `validation_per_class` or "
            "`validation_fraction` (the last files of each class are held out). "
            f"Received: split={split!r}, validation_per_class=None, validation_fraction=None"
        )
    paths, labels = [], []
    for label, class_files in enumerate(files):
        n = _num_held_out(len(class_files), validation_per_class, validation_fraction)
        if held_out and n >= len(class_files):
            raise ValueError(
                f"Class {class_names[label]!r} has {len(class_files)} images; holding out "
                f"{n} for validation leaves none for training. Received: "
                f"validation_per_class={validation_per_class}, "
                f"validation_fraction={validation_fraction}"
            )
        if split == "train":
            chosen = class_files[: len(class_files) - n]
        elif split == "validation":
            chosen = class_files[len(class_files) - n :]
        else:
            chosen = class_files
        paths += chosen
        labels += [label] * len(chosen)
    return paths, labels, class_names


def folder_source(
    path,
    split="train",
    *,
    validation_per_class=None,
    validation_fraction=None,
    image_size=None,
    shuffle_files=False,
    seed=None,
    input_context=None,
    extensions=IMAGE_EXTENSIONS,
):
    """Images in the ImageFolder layout, as a `tf.data.Dataset` of `(image, label)`.

    `path` holds one sub-folder per class (`path/cat/0001.jpg`, `path/dog/x.png` ...);
    labels index the sorted class names. Images of any size and format that
    `tf.io.decode_image` reads (JPEG, PNG, BMP, GIF's first frame) are decoded to `uint8` RGB;
    grayscale images are converted to RGB.

    The train/validation split is deterministic: files are sorted by name within each
    class, and validation holds the LAST `validation_per_class` files of every class (or
    the last `round(validation_fraction * count)`). The same arguments always give the
    same, disjoint splits, on any machine. For a folder that is already split
    (`root/train/cat/...`, `root/val/cat/...`), point `path` at each split folder and use
    `split="all"`.

    Files are read lazily (one `tf.io.read_file` per example, `AUTOTUNE` parallelism), so
    folders of any size work; cache decoded images with `build_pipeline(cache=...)` when they
    fit.

    Args:
        path: the root folder.
        split: `"train"` (all files minus the held-out ones), `"validation"` (the held-out
            files; needs `validation_per_class` or `validation_fraction`) or `"all"`.
            Defaults to `"train"`.
        validation_per_class: number of files per class held out for validation, e.g. 500
            for the project's CIFAR-10 folder. Defaults to `None` (none held out).
        validation_fraction: fraction of each class held out instead, in `[0, 1)`.
            Defaults to `None`.
        image_size: `None` to keep each image's size, or an int / `(height, width)` to
            resize every image to (bilinear, antialiased, back to `uint8`); needed to batch
            images of different sizes unless the view function crops them to one size.
            Defaults to `None`.
        shuffle_files: whether to shuffle the file list (each iteration anew) before
            reading; cheaper than a large example shuffle buffer for big folders.
            Defaults to `False`.
        seed: seed of the file shuffle. Defaults to `None`.
        input_context: a `tf.distribute.InputContext`; when given, only this input
            pipeline's share of the files is read (sharded before decoding). Leave it
            `None` when `build_pipeline` shards (the default there). Defaults to `None`.
        extensions: accepted file endings (case-insensitive). Defaults to
            `(".jpg", ".jpeg", ".png", ".bmp", ".gif")`.

    Returns:
        A tuple `(dataset, info)`: `dataset` yields `(image, label)`, `image` `uint8`
        `[height, width, 3]`, `label` `int32`; `info` is a `DatasetInfo`. Its
        `image_shape` is `image_size` when given; otherwise the size of the first image
        of (up to 16) classes when they agree, and `(None, None, 3)` when they differ
        (the dataset's static shape is always `(None, None, 3)` without `image_size`).

    Example:

    ```python
    train, info = folder_source("/data/cifar10", "train", validation_per_class=500)
    val, _ = folder_source("/data/cifar10", "validation", validation_per_class=500)
    info.class_names[:2]  # ('airplane', 'automobile')
    ```
    """
    image_size = _utils.check_image_size(image_size)
    _utils.check_input_context(input_context)
    paths, labels, class_names = folder_split_files(
        path,
        split,
        validation_per_class=validation_per_class,
        validation_fraction=validation_fraction,
        extensions=extensions,
    )
    held_out = validation_per_class is not None or validation_fraction is not None
    if image_size is None:
        height, width = _probe_shape(paths, labels)
    else:
        height, width = image_size
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.array(paths, dtype=object).astype(str), np.array(labels, np.int32))
    )
    dataset = _utils.shard(dataset, input_context)
    if shuffle_files:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda p, label: (_decode(p, image_size), label), num_parallel_calls=_utils.AUTOTUNE
    )
    info = DatasetInfo(
        name=f"folder:{os.fspath(path)}",
        split=split,
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=(height, width, 3),
        num_examples=len(paths),
        splits=FOLDER_SPLITS if held_out else ("train", "all"),
    )
    return dataset, info
