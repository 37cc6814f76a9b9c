"""Metadata returned with every dataset source, and the errors the sources raise."""

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a source knows about the dataset it returns.

    Every source (`tfds_source`, `folder_source`, `cifar10_sample`, `load`) returns
    `(dataset, info)`: `dataset` yields `(image, label)` pairs, `image` a `uint8` tensor
    `[height, width, 3]` and `label` an `int32` scalar, and `info` is this record.

    Args:
        name: the dataset's name as given to `load` (`"cifar10"`, `"folder:/data/pets"`,
            `"cifar10_sample"` ...).
        split: the split the dataset holds (`"train"`, `"test[:10%]"` ...).
        num_classes: the number of classes; labels lie in `[0, num_classes)`, or are `-1`
            for unlabelled examples (STL-10's `unlabelled` split).
        class_names: the class names, indexed by label.
        image_shape: `(height, width, 3)`; `height` and `width` are `None` when the images
            vary in size (resize them in the view function, or pass `image_size` to
            `folder_source`).
        num_examples: the number of examples in `split` (before any sharding), or `None`
            when unknown.
        splits: the split names this source can return.
        skipped: `(kind, count)` pairs of the entries a folder source left out (`"other
            files"`, `"hidden"`, `"broken links"`, `"unreadable images"`), only kinds with
            a count > 0. Defaults to `()`.
    """

    name: str
    split: str
    num_classes: int
    class_names: Tuple[str, ...]
    image_shape: Tuple[Optional[int], Optional[int], int]
    num_examples: Optional[int] = None
    splits: Tuple[str, ...] = ()
    skipped: Tuple[Tuple[str, int], ...] = ()

    def summary(self):
        """One line: name, split, examples, classes, image size, and what was left out.

        Example: `"folder:/data/cifar10 train: 45000 images, 10 classes, 32x32 (left out:
        1 other files, 2 hidden)"`.
        """
        height, width, _ = self.image_shape
        size = "sizes vary" if height is None else f"{height}x{width}"
        count = "unknown number of" if self.num_examples is None else str(self.num_examples)
        line = f"{self.name} {self.split}: {count} images, {self.num_classes} classes, {size}"
        if self.skipped:
            line += " (left out: " + ", ".join(f"{n} {kind}" for kind, n in self.skipped) + ")"
        return line


class DatasetNotPreparedError(ValueError):
    """A TFDS dataset is not prepared in `data_dir` and may not be downloaded.

    Raised by `tfds_source` and `load` before any read or download is attempted; the message
    says how to prepare the data offline and which local sources work without it. A subclass
    of `ValueError`.
    """
