"""`folder_source`: images in the ImageFolder layout (`class_name/*.jpg`)."""

import numbers
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_contrast.data import _utils
from keras_contrast.data.info import DatasetInfo

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
FOLDER_SPLITS = ("train", "validation", "all")
BAD_IMAGE_POLICIES = ("error", "skip")
_NAMED_FILES = 5  # bad files named in a message
_PROBE_CLASSES = 16


# Kinds of entries a folder source leaves out, in the order of its summary.
SKIPPED_KINDS = ("other files", "hidden", "broken links", "unreadable images")


def _kind_of_entry(entry):
    """Why a directory entry is not an image candidate, or `None` (a regular file)."""
    if entry.name.startswith("."):
        return "hidden"
    if entry.is_symlink() and not os.path.exists(entry.path):
        return "broken links"
    return None if entry.is_file() else "other files"


def _list_classes(path, extensions):
    """`(class_names, files per class, {skipped kind: count})` of an ImageFolder."""
    skipped = dict.fromkeys(SKIPPED_KINDS, 0)
    class_names = []
    for entry in os.scandir(path):
        if entry.is_dir() and not entry.name.startswith("."):
            class_names.append(entry.name)
        else:
            skipped["hidden" if entry.name.startswith(".") else "other files"] += 1
    class_names.sort()
    if not class_names:
        raise ValueError(
            "`path` must hold one sub-folder of images per class (ImageFolder layout: "
            f"class_name/*.jpg). Received: path={path!r}, which has no sub-folders."
        )
    files = []
    for class_name in class_names:
        class_dir = os.path.join(path, class_name)
        names = []
        for entry in os.scandir(class_dir):
            kind = _kind_of_entry(entry)
            if kind is None and not entry.name.lower().endswith(extensions):
                kind = "other files"
            if kind is None:
                names.append(entry.name)
            else:
                skipped[kind] += 1
        if not names:
            raise ValueError(
                f"Class folder {class_dir!r} holds no images with extensions {extensions}. "
                f"Received: path={path!r}"
            )
        files.append([os.path.join(class_dir, name) for name in sorted(names)])
    return tuple(class_names), files, skipped


# Bytes read from each end of a file by the structure check.
_HEAD, _TAIL = 32, 4096


def image_file_problem(path):
    """Why `path` is not a complete image file that TensorFlow decodes, or `None`.

    A cheap structural check that reads only the first and last bytes: the content must be
    JPEG, PNG, GIF or BMP (whatever the extension; `tf.io.decode_image` goes by content),
    and complete: a JPEG ends with its end-of-image marker, a PNG with its `IEND` chunk, a
    GIF with its trailer byte, and a BMP is as long as its header says. This finds empty,
    truncated and non-image files (the usual damage of an interrupted copy or download);
    damage inside the compressed data is found only when decoding.

    Args:
        path: a file path.

    Returns:
        `None`, or a short reason such as `"truncated JPEG (no end-of-image marker)"`.
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(_HEAD)
            f.seek(max(0, size - _TAIL))
            tail = f.read(_TAIL)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    if size == 0:
        return "empty file"
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail[-16:] else "truncated PNG (no IEND chunk)"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return None if tail.rstrip(b"\x00").endswith(b";") else "truncated GIF (no trailer)"
    if head.startswith(b"BM") and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")
        return None if size >= declared else (
            f"truncated BMP ({size} of {declared} bytes)")
    return "not a JPEG, PNG, GIF or BMP image"


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


def _decode_to(path, height, width):
    """Decodes; an image of another size than `(height, width)` is resized to it."""
    image = _decode(path, None)
    same = tf.reduce_all(tf.shape(image)[:2] == [height, width])
    image = tf.cond(
        same,
        lambda: image,
        lambda: _utils.to_uint8_rgb(image, (height, width)),
    )
    return tf.ensure_shape(image, (height, width, 3))


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
    paths, labels, class_names, _ = _split_files(
        path, split, validation_per_class, validation_fraction, extensions
    )
    return paths, labels, class_names


def _split_files(path, split, validation_per_class, validation_fraction, extensions):
    """`folder_split_files`, plus the `{kind: count}` of the entries it left out."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
        raise ValueError(f"`path` must be an existing folder. Received: path={path!r}")
    _utils.check_split_choice(split, FOLDER_SPLITS)
    _check_validation_args(validation_per_class, validation_fraction)
    extensions = tuple(e.lower() for e in extensions)
    path = os.fspath(path)
    class_names, files, skipped = _list_classes(path, extensions)
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
    return paths, labels, class_names, skipped


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
    on_bad_image="error",
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

    Before any image is decoded, every file of the split is checked
    (`image_file_problem`: the first and last bytes of each file): an empty, truncated or
    non-image file is an error naming it (`on_bad_image="error"`) or is left out with a
    warning naming the first ones (`"skip"`). Entries that are not image candidates
    (other extensions such as `.txt`, hidden names, broken links) are left out; `info.skipped`
    counts every kind left out and `info.summary()` says it in one line.

    Args:
        path: the root folder.
        split: `"train"` (all files minus the held-out ones), `"validation"` (the held-out
            files; needs `validation_per_class` or `validation_fraction`) or `"all"`.
            Defaults to `"train"`.
        validation_per_class: number of files per class held out for validation, e.g. 500
            for the project's CIFAR-10 folder. Defaults to `None` (none held out).
        validation_fraction: fraction of each class held out instead, in `[0, 1)`.
            Defaults to `None`.
        image_size: an int / `(height, width)` to resize every image to (bilinear,
            antialiased, back to `uint8`), or `None`: the size of the first image of (up
            to 16) classes when they agree, with any image of another size resized to it
            (as `keras.utils.image_dataset_from_directory` does), and each image's own size
            when they differ (the view function then crops them to one size). Defaults to
            `None`.
        shuffle_files: whether to shuffle the file list (each iteration anew) before
            reading; cheaper than a large example shuffle buffer for big folders.
            Defaults to `False`.
        seed: seed of the file shuffle. Defaults to `None`.
        input_context: a `tf.distribute.InputContext`; when given, only this input
            pipeline's share of the files is read (sharded before decoding). Leave it
            `None` when `build_pipeline` shards (the default there). Defaults to `None`.
        extensions: accepted file endings (case-insensitive). Defaults to
            `(".jpg", ".jpeg", ".png", ".bmp", ".gif")`.
        on_bad_image: `"error"` (a `ValueError` naming the bad files, before any
            training) or `"skip"` (leave them out, with a warning). Defaults to `"error"`.

    Returns:
        A tuple `(dataset, info)`: `dataset` yields `(image, label)`, `image` `uint8`
        `[height, width, 3]`, `label` `int32`; `info` is a `DatasetInfo`. Its
        `image_shape` (and the dataset's static shape) is the size every image has:
        `image_size`, or the probed common size; `(None, None, 3)` when the first images
        of the classes differ in size.

    Example:

    ```python
    train, info = folder_source("/data/cifar10", "train", validation_per_class=500)
    val, _ = folder_source("/data/cifar10", "validation", validation_per_class=500)
    info.class_names[:2]  # ('airplane', 'automobile')
    ```
    """
    image_size = _utils.check_image_size(image_size)
    _utils.check_input_context(input_context)
    if on_bad_image not in BAD_IMAGE_POLICIES:
        raise ValueError(
            f"`on_bad_image` must be one of {BAD_IMAGE_POLICIES}. "
            f"Received: on_bad_image={on_bad_image!r}"
        )
    paths, labels, class_names, skipped = _split_files(
        path, split, validation_per_class, validation_fraction, extensions
    )
    paths, labels = _leave_out_bad_images(path, split, paths, labels, on_bad_image, skipped)
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
    if height is None:
        decode = lambda p: _decode(p, None)  # noqa: E731 (sizes differ: kept)
    else:
        decode = lambda p: _decode_to(p, height, width)  # noqa: E731
    dataset = dataset.map(
        lambda p, label: (decode(p), label), num_parallel_calls=_utils.AUTOTUNE
    )
    info = DatasetInfo(
        name=f"folder:{os.fspath(path)}",
        split=split,
        num_classes=len(class_names),
        class_names=class_names,
        image_shape=(height, width, 3),
        num_examples=len(paths),
        splits=FOLDER_SPLITS if held_out else ("train", "all"),
        skipped=tuple((kind, count) for kind, count in skipped.items() if count),
    )
    return dataset, info


def _leave_out_bad_images(root, split, paths, labels, on_bad_image, skipped):
    """Checks every file (`image_file_problem`): raises, or drops the bad ones and warns."""
    problems = [(p, problem) for p in paths if (problem := image_file_problem(p))]
    if not problems:
        return paths, labels
    listed = "; ".join(
        f"{os.path.relpath(p, root)}: {problem}" for p, problem in problems[:_NAMED_FILES]
    )
    more = f"; and {len(problems) - _NAMED_FILES} more" if len(problems) > _NAMED_FILES else ""
    where = f"{len(problems)} of the {len(paths)} files of split {split!r} of {root}"
    if on_bad_image == "error":
        raise ValueError(
            f"{where} are not readable images: {listed}{more}. Remove or replace them, or "
            "pass on_bad_image='skip' (--on_bad_image=skip in the recipes) to leave them out."
        )
    if len(problems) == len(paths):
        raise ValueError(f"{where} are not readable images (none left): {listed}{more}")
    warnings.warn(f"Leaving out {where}, which are not readable images: {listed}{more}",
                  stacklevel=3)
    skipped["unreadable images"] += len(problems)
    bad = {p for p, _ in problems}
    kept = [(p, label) for p, label in zip(paths, labels) if p not in bad]
    return [p for p, _ in kept], [label for _, label in kept]
