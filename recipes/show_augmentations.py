"""Writes a PNG grid: original / weak view / strong view, one row per image.

    python recipes/show_augmentations.py --output augmentations.png

Images come from keras_contrast.data's shipped CIFAR sample when that module
provides it; otherwise (module absent or without a sample yet) from a few
synthetic images (gradients, shapes, noise) so the script always runs.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402

from keras_contrast import layers  # noqa: E402

_OUTPUT = flags.DEFINE_string("output", "augmentations.png", "PNG path to write.")
_NUM = flags.DEFINE_integer("num_images", 6, "Rows in the grid.")
_SIZE = flags.DEFINE_integer("size", 32, "View size in pixels.")
_SCALE = flags.DEFINE_integer("scale", 4, "Upscaling of each tile in the PNG.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for the views.")


def load_images(num, size):
    """CIFAR sample from keras_contrast.data if available, else synthetic."""
    try:
        from keras_contrast import data as kc_data

        loader = getattr(kc_data, "cifar10_sample_arrays", None)
        if loader is not None:
            images = loader()[0][::500]  # One image per class.
            return np.asarray(images[:num]).astype("uint8"), "CIFAR-10 sample"
    except (ImportError, OSError, ValueError):
        pass
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = []
    for i in range(num):
        img = np.stack([xx, yy, 1 - xx * yy], -1) * 200 + rng.integers(0, 40, (size, size, 3))
        cy, cx, r = rng.integers(size // 4, 3 * size // 4, 3)
        img[(yy * size - cy) ** 2 + (xx * size - cx) ** 2 < (r / 2) ** 2] = rng.integers(0, 256, 3)
        img[size // 5 : size // 3, size // 6 : size // 2] = rng.integers(0, 256, 3)
        out.append(np.clip(img, 0, 255))
    return np.stack(out).astype("uint8"), "synthetic"


def main(_):
    images, source = load_images(_NUM.value, _SIZE.value)
    size = _SIZE.value
    weak = layers.weak_pipeline(size, seed=_SEED.value)
    strong = layers.clsa_strong_pipeline(size, seed=_SEED.value + 100)
    rows = [images, np.asarray(weak(images)), np.asarray(strong(images))]
    grid = np.concatenate(
        [np.concatenate([np.pad(np.clip(r[i], 0, 255), ((2, 2), (2, 2), (0, 0)),
                                constant_values=255) for r in rows], 1)
         for i in range(len(images))], 0,
    ).astype("uint8")
    img = Image.fromarray(grid)
    img = img.resize((img.width * _SCALE.value, img.height * _SCALE.value), Image.NEAREST)
    img.save(_OUTPUT.value)
    print(f"Wrote {_OUTPUT.value}: columns original / weak / strong, {source} images.")


if __name__ == "__main__":
    app.run(main)
