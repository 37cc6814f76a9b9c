"""Writes a PNG grid: original / weak view / strong view, one row per image.

    python recipes/show_augmentations.py --output=/tmp/aug.png
    python recipes/show_augmentations.py --image_size=64 --noblur --seed=3

The images are the first of each class of the CIFAR-10 sample shipped with the package; the
views are those the pretraining recipes train on (`keras_contrast.data.ViewMaker`): the weak
view (`"query"`) and CLSA's single strong crop (`"strong"`). Takes the shared `--seed`,
`--image_size` (default 32; `--size` is an alias) and `--blur` flags.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import recipe_flags  # noqa: E402  First: configures TensorFlow's allocator before it starts.
import numpy as np  # noqa: E402
import recipe_config  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from PIL import Image  # noqa: E402

import keras_contrast as kc  # noqa: E402

flags.DEFINE_string("output", "augmentations.png", "PNG path to write.")
flags.DEFINE_integer("num_images", 6, "Rows in the grid (at most 10: one per class).")
flags.DEFINE_integer("scale", 4, "Upscaling of each tile in the PNG.")
flags.DEFINE_alias("size", "image_size")

FLAGS = flags.FLAGS
DEFAULT_SIZE = 32


def grid(rows, scale):
    """Tiles `rows` (lists of equally sized images) into one upscaled PIL image."""
    tiles = [
        np.concatenate(
            [np.pad(np.clip(image, 0, 255), ((2, 2), (2, 2), (0, 0)), constant_values=255)
             for image in row], 1,
        )
        for row in rows
    ]
    image = Image.fromarray(np.concatenate(tiles, 0).astype("uint8"))
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def main(argv):
    del argv
    config = recipe_config.config_from_flags("show_augmentations")
    if not 1 <= FLAGS.num_images <= 10:
        raise ValueError(
            f"--num_images must be in [1, 10]. Received: --num_images={FLAGS.num_images}"
        )
    if FLAGS.scale < 1:
        raise ValueError(f"--scale must be >= 1. Received: --scale={FLAGS.scale}")
    size = config.image_size or DEFAULT_SIZE
    images = kc.data.cifar10_sample_arrays("train")[0][::500][: FLAGS.num_images]  # by class
    views = kc.data.ViewMaker(
        size,
        strong_crops=kc.data.ViewMaker.clsa_crops(size, "single"),
        blur=FLAGS.blur,
        seed=config.seed,
    )(images)
    strong = views["strong"]
    strong = strong[0] if isinstance(strong, (list, tuple)) else strong
    original = tf.image.resize(images, (size, size)).numpy()
    columns = [original, np.asarray(views["query"]), np.asarray(strong)]
    grid(list(zip(*columns)), FLAGS.scale).save(FLAGS.output)
    print(f"Wrote {FLAGS.output}: columns original / weak / strong, CIFAR-10 sample images.")


if __name__ == "__main__":
    app.run(main)
