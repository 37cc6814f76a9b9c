"""Builds `cifar10_sample.npz`, the small real CIFAR-10 subset shipped with keras-contrast.

The sample is taken from the CIFAR-10 training split in the ImageFolder layout
(`airplane/0000.jpg ... truck/4999.jpg`, JPEG-encoded 32x32 RGB images), read straight from a
zip archive or a folder. For every class (sorted by name) it keeps

* the files with the first `train_per_class` indices in sorted order as the `train` part, and
* the files with the last `validation_per_class` indices as the `validation` part,

so both parts are disjoint, and they match a `folder:` source of the full split with
`validation_per_class >= validation_per_class` (the sample's validation images are then in the
full folder's validation split, its training images in the full folder's training split).

The JPEG files are stored byte for byte (no re-encoding) in one `uint8` buffer per part plus
offsets, in a compressed `.npz` that needs no pickle: about 0.9 KB per image, versus 3 KB of
raw pixels. `keras_contrast.data.cifar10_sample` decodes them with `tf.io.decode_jpeg`, the
same decoder the `folder:` source uses, so pixels agree with reading the folder.

Run it from the repository root:

```
python -m keras_contrast.data.make_cifar10_sample \
    --source /work/shared/data/cifar10-train.zip \
    --output keras_contrast/data/cifar10_sample.npz
```
"""

import argparse
import io
import os
import zipfile

import numpy as np

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def _list_source(source):
    """Returns `{class_name: sorted [(file_name, reader)]}` for a zip file or a folder."""
    files = {}
    if zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        for name in archive.namelist():
            parts = name.strip("/").split("/")
            if len(parts) < 2 or not parts[-1].lower().endswith(_IMAGE_EXTENSIONS):
                continue
            files.setdefault(parts[-2], []).append(
                (parts[-1], lambda name=name: archive.read(name))
            )
    elif os.path.isdir(source):
        for class_name in os.listdir(source):
            class_dir = os.path.join(source, class_name)
            if not os.path.isdir(class_dir):
                continue
            for file_name in os.listdir(class_dir):
                if file_name.lower().endswith(_IMAGE_EXTENSIONS):
                    path = os.path.join(class_dir, file_name)
                    files.setdefault(class_name, []).append(
                        (file_name, lambda path=path: open(path, "rb").read())
                    )
    else:
        raise ValueError(
            "`source` must be a zip file or a folder in the ImageFolder layout. "
            f"Received: source={source!r}"
        )
    return {k: sorted(v, key=lambda item: item[0]) for k, v in files.items()}


def _pack(blobs):
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    buffer = np.frombuffer(b"".join(blobs), np.uint8)
    return buffer, offsets


def make_sample(source, output, train_per_class=500, validation_per_class=100):
    """Writes the sample `.npz` and returns its size in bytes.

    Args:
        source: path of the CIFAR-10 training split, a zip file or a folder in the
            ImageFolder layout (`class_name/NNNN.jpg`).
        output: path of the `.npz` file to write.
        train_per_class: images per class in the `train` part, the first ones in sorted
            order. Defaults to `500`.
        validation_per_class: images per class in the `validation` part, the last ones in
            sorted order. Defaults to `100`.

    Returns:
        The size of the written file in bytes.
    """
    if train_per_class <= 0:
        raise ValueError(
            f"`train_per_class` must be > 0. Received: train_per_class={train_per_class}"
        )
    if validation_per_class <= 0:
        raise ValueError(
            "`validation_per_class` must be > 0. "
            f"Received: validation_per_class={validation_per_class}"
        )
    files = _list_source(source)
    if sorted(files) != list(CLASS_NAMES):
        raise ValueError(
            f"`source` must hold the 10 CIFAR-10 class folders {CLASS_NAMES}. "
            f"Received: source={source!r} with classes {sorted(files)}"
        )
    arrays = {"class_names": np.array(CLASS_NAMES)}
    parts = {"train": [], "validation": []}
    for label, class_name in enumerate(CLASS_NAMES):
        class_files = files[class_name]
        if len(class_files) < train_per_class + validation_per_class:
            raise ValueError(
                f"Class {class_name!r} has {len(class_files)} images, fewer than "
                f"train_per_class + validation_per_class="
                f"{train_per_class + validation_per_class}."
            )
        parts["train"] += [(label,) + f for f in class_files[:train_per_class]]
        parts["validation"] += [(label,) + f for f in class_files[-validation_per_class:]]
    for part, entries in parts.items():
        buffer, offsets = _pack([read() for _, _, read in entries])
        arrays[f"{part}_jpeg"] = buffer
        arrays[f"{part}_offsets"] = offsets
        arrays[f"{part}_labels"] = np.array([label for label, _, _ in entries], np.uint8)
        arrays[f"{part}_files"] = np.array(
            [f"{CLASS_NAMES[label]}/{name}" for label, name, _ in entries]
        )
    with io.BytesIO() as stream:
        np.savez_compressed(stream, **arrays)
        data = stream.getvalue()
    with open(output, "wb") as f:
        f.write(data)
    return len(data)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/work/shared/data/cifar10-train.zip")
    parser.add_argument(
        "--output", default=os.path.join(os.path.dirname(__file__), "cifar10_sample.npz")
    )
    parser.add_argument("--train_per_class", type=int, default=500)
    parser.add_argument("--validation_per_class", type=int, default=100)
    args = parser.parse_args(argv)
    size = make_sample(
        args.source, args.output, args.train_per_class, args.validation_per_class
    )
    print(f"Wrote {args.output}: {size / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
