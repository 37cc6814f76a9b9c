"""AutoAugment: the published learned policies with torchvision's magnitudes, Pillow-exact."""

import numpy as np
import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils, augment_ops

# torchvision's `AutoAugment._get_policies`: 25 sub-policies of two
# `(op, probability, magnitude bin)` each (bin `None`: the op has none).
POLICIES = {
    "imagenet": (
        (("posterize", 0.4, 8), ("rotate", 0.6, 9)),
        (("solarize", 0.6, 5), ("auto_contrast", 0.6, None)),
        (("equalize", 0.8, None), ("equalize", 0.6, None)),
        (("posterize", 0.6, 7), ("posterize", 0.6, 6)),
        (("equalize", 0.4, None), ("solarize", 0.2, 4)),
        (("equalize", 0.4, None), ("rotate", 0.8, 8)),
        (("solarize", 0.6, 3), ("equalize", 0.6, None)),
        (("posterize", 0.8, 5), ("equalize", 1.0, None)),
        (("rotate", 0.2, 3), ("solarize", 0.6, 8)),
        (("equalize", 0.6, None), ("posterize", 0.4, 6)),
        (("rotate", 0.8, 8), ("color", 0.4, 0)),
        (("rotate", 0.4, 9), ("equalize", 0.6, None)),
        (("equalize", 0.0, None), ("equalize", 0.8, None)),
        (("invert", 0.6, None), ("equalize", 1.0, None)),
        (("color", 0.6, 4), ("contrast", 1.0, 8)),
        (("rotate", 0.8, 8), ("color", 1.0, 2)),
        (("color", 0.8, 8), ("solarize", 0.8, 7)),
        (("sharpness", 0.4, 7), ("invert", 0.6, None)),
        (("shear_x", 0.6, 5), ("equalize", 1.0, None)),
        (("color", 0.4, 0), ("equalize", 0.6, None)),
        (("equalize", 0.4, None), ("solarize", 0.2, 4)),
        (("solarize", 0.6, 5), ("auto_contrast", 0.6, None)),
        (("invert", 0.6, None), ("equalize", 1.0, None)),
        (("color", 0.6, 4), ("contrast", 1.0, 8)),
        (("equalize", 0.8, None), ("equalize", 0.6, None)),
    ),
    "cifar10": (
        (("invert", 0.1, None), ("contrast", 0.2, 6)),
        (("rotate", 0.7, 2), ("translate_x", 0.3, 9)),
        (("sharpness", 0.8, 1), ("sharpness", 0.9, 3)),
        (("shear_y", 0.5, 8), ("translate_y", 0.7, 9)),
        (("auto_contrast", 0.5, None), ("equalize", 0.9, None)),
        (("shear_y", 0.2, 7), ("posterize", 0.3, 7)),
        (("color", 0.4, 3), ("brightness", 0.6, 7)),
        (("sharpness", 0.3, 9), ("brightness", 0.7, 9)),
        (("equalize", 0.6, None), ("equalize", 0.5, None)),
        (("contrast", 0.6, 7), ("sharpness", 0.6, 5)),
        (("color", 0.7, 7), ("translate_x", 0.5, 8)),
        (("equalize", 0.3, None), ("auto_contrast", 0.4, None)),
        (("translate_y", 0.4, 3), ("sharpness", 0.2, 6)),
        (("brightness", 0.9, 6), ("color", 0.2, 8)),
        (("solarize", 0.5, 2), ("invert", 0.0, None)),
        (("equalize", 0.2, None), ("auto_contrast", 0.6, None)),
        (("equalize", 0.2, None), ("equalize", 0.6, None)),
        (("color", 0.9, 9), ("equalize", 0.6, None)),
        (("auto_contrast", 0.8, None), ("solarize", 0.2, 8)),
        (("brightness", 0.1, 3), ("color", 0.7, 0)),
        (("solarize", 0.4, 5), ("auto_contrast", 0.9, None)),
        (("translate_y", 0.9, 9), ("translate_y", 0.7, 9)),
        (("auto_contrast", 0.9, None), ("solarize", 0.8, 3)),
        (("equalize", 0.8, None), ("invert", 0.1, None)),
        (("translate_y", 0.7, 9), ("auto_contrast", 0.9, None)),
    ),
    "svhn": (
        (("shear_x", 0.9, 4), ("invert", 0.2, None)),
        (("shear_y", 0.9, 8), ("invert", 0.7, None)),
        (("equalize", 0.6, None), ("solarize", 0.6, 6)),
        (("invert", 0.9, None), ("equalize", 0.6, None)),
        (("equalize", 0.6, None), ("rotate", 0.9, 3)),
        (("shear_x", 0.9, 4), ("auto_contrast", 0.8, None)),
        (("shear_y", 0.9, 8), ("invert", 0.4, None)),
        (("shear_y", 0.9, 5), ("solarize", 0.2, 6)),
        (("invert", 0.9, None), ("auto_contrast", 0.8, None)),
        (("equalize", 0.6, None), ("rotate", 0.9, 3)),
        (("shear_x", 0.9, 4), ("solarize", 0.3, 3)),
        (("shear_y", 0.8, 8), ("invert", 0.7, None)),
        (("equalize", 0.9, None), ("translate_y", 0.6, 6)),
        (("invert", 0.9, None), ("equalize", 0.6, None)),
        (("contrast", 0.3, 3), ("rotate", 0.8, 4)),
        (("invert", 0.8, None), ("translate_y", 0.0, 2)),
        (("shear_y", 0.7, 6), ("solarize", 0.4, 8)),
        (("invert", 0.6, None), ("rotate", 0.8, 4)),
        (("shear_y", 0.3, 7), ("translate_x", 0.9, 3)),
        (("shear_x", 0.1, 6), ("invert", 0.6, None)),
        (("solarize", 0.7, 2), ("translate_y", 0.6, 7)),
        (("shear_y", 0.8, 4), ("invert", 0.8, None)),
        (("shear_x", 0.7, 9), ("translate_y", 0.8, 3)),
        (("shear_y", 0.8, 5), ("auto_contrast", 0.7, None)),
        (("shear_x", 0.7, 2), ("invert", 0.1, None)),
    ),
}

NUM_BINS = 10
_ENHANCE = ("brightness", "color", "contrast", "sharpness")
_TRANSLATE = ("translate_x", "translate_y")


def _linspace32(start, stop):
    """torchvision's `torch.linspace(start, stop, 10)`: float32, as float64."""
    return np.linspace(start, stop, NUM_BINS).astype(np.float32).astype(np.float64)


def magnitude(name, bin_index):
    """torchvision's unsigned magnitude of op `name` at `bin_index` (a Python
    float; `None` for the translations, whose magnitude depends on the size)."""
    if name in ("shear_x", "shear_y"):
        return float(_linspace32(0.0, 0.3)[bin_index])
    if name == "rotate":
        return float(_linspace32(0.0, 30.0)[bin_index])
    if name in _ENHANCE:
        return float(_linspace32(0.0, 0.9)[bin_index])
    if name == "posterize":
        return float(8 - int(np.round(np.float32(bin_index) / np.float32((NUM_BINS - 1) / 4))))
    if name == "solarize":
        return float(_linspace32(255.0, 0.0)[bin_index])
    return None


def op_values(name, bin_index, sign):
    """Registry values of torchvision's op `name` at `bin_index` with `sign` (+-1)
    on a PIL image, computed in Python as torchvision and Pillow do."""
    values = [0.0] * augment_ops.NUM_VALUES
    if bin_index is None or name in _TRANSLATE:
        return values
    m = magnitude(name, bin_index)
    if name in _ENHANCE:
        values[0] = 1.0 + sign * m
    elif name == "posterize":
        values[0] = m
    elif name == "solarize":
        values[0] = m
    elif name == "rotate":
        values[:2] = augment_ops.rotation_values(sign * m)
    elif name == "shear_x":
        # `F.affine(shear=[degrees(atan(m)), 0], center=[0, 0])`: torchvision's
        # inverse matrix has `tan(sx)` at (0, 1).
        sx = np.radians(np.degrees(np.arctan(sign * m)))
        values[0] = float(np.tan(sx))
    elif name == "shear_y":
        # `shear=[0, degrees(atan(m))]`: `-sin(-sy) / cos(sy)` at (1, 0).
        sy = np.radians(np.degrees(np.arctan(sign * m)))
        values[0] = float(-(np.sin(-sy) / np.cos(sy)))
    return values


@keras.saving.register_keras_serializable(package="keras_contrast")
class AutoAugment(BaseImagePreprocessingLayer):
    """AutoAugment: one learned sub-policy of two ops per image, Pillow-exact.

    The published policies learned on ImageNet, CIFAR-10 and SVHN (Cubuk et
    al. 2019), with the sub-policies, probabilities and magnitude tables of
    `torchvision.transforms.AutoAugment` (10 bins; shear up to 0.3, translate
    up to 150/331 of the size, rotate up to 30 degrees, enhance factors
    `1 +- 0.9`, posterize 8 down to 4 bits, solarize threshold 255 down to
    0; signed magnitudes take a random sign). For every image independently
    one of the 25 sub-policies is drawn uniformly, and each of its two ops is
    applied with its probability. The ops are those of the shared registry
    (`augment_ops`), which equal Pillow's on 8-bit images bit for bit, i.e.
    what torchvision's AutoAugment computes on PIL images with its defaults
    (nearest resampling, black fill).

    With `cutout_size > 0`, every image then gets a Cutout square of that side
    (the AutoAugment paper's CIFAR-10 recipe, 16 px at 32x32): a centre drawn
    uniformly over the image, the box `[c - s // 2, c + s // 2)` clipped to it,
    filled with `cutout_fill`.

    Inputs are mapped from `value_range` to 0-255 and rounded first (float
    inputs are quantised to 256 levels) and mapped back at the end; the output
    has the layer's compute dtype. `jit_compile=True` runs one XLA program
    per input shape that loops over the images and computes only the ops each
    drew; `jit_compile=False` runs vectorised graph ops; both give the same
    bits. Works eagerly, in `tf.data.Dataset.map` (batched or not) and in a
    model (not one compiled with `jit_compile=True`). Images must have 1 or 3
    channels.

    Args:
        policy: `"cifar10"`, `"svhn"` or `"imagenet"`. Defaults to
            `"cifar10"`.
        cutout_size: side of the Cutout square in pixels, 0 for none.
            Defaults to `0` (torchvision's AutoAugment has none).
        cutout_fill: grey level (0-255 scale) of the Cutout square. Defaults
            to `128`.
        value_range: `(low, high)` of the input values. Defaults to
            `(0, 255)`.
        jit_compile: run the XLA implementation. Defaults to `True`.
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments (`name`, `dtype`).

    Returns:
        Images with the input's shape, in `value_range`. A transformation is
        a dict with `"sub_policies"` (int32 `[B]`, indices into
        `POLICIES[policy]`), `"apply"` (bool `[B, 2]`), `"signs"` (float32
        `[B, 2]`, +-1) and, with Cutout, `"cutout_centres"` (int32 `[B, 2]`,
        row and column).

    Example:

    ```python
    import numpy as np
    images = np.random.randint(0, 256, (8, 32, 32, 3)).astype("uint8")
    augment = AutoAugment("cifar10", cutout_size=16, seed=1)
    out = augment(images)  # float32 [8, 32, 32, 3] in [0, 255]
    ```

    References:
        - [AutoAugment, Cubuk et al. 2019](https://arxiv.org/abs/1805.09501)
        - [Cutout, DeVries & Taylor 2017](https://arxiv.org/abs/1708.04552)
    """

    _USE_BASE_FACTOR = False

    def __init__(
        self,
        policy="cifar10",
        cutout_size=0,
        cutout_fill=128,
        value_range=(0, 255),
        jit_compile=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if policy not in POLICIES:
            raise ValueError(
                f"`policy` must be one of {sorted(POLICIES)}. Received: policy={policy!r}"
            )
        for name, value, low, high in (
            ("cutout_size", cutout_size, 0, None),
            ("cutout_fill", cutout_fill, 0, 255),
        ):
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or value < low
                or (high is not None and value > high)
            ):
                bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
                raise ValueError(
                    f"`{name}` must be an integer {bounds}. Received: {name}={value!r}"
                )
        if not isinstance(jit_compile, bool):
            raise ValueError(
                f"`jit_compile` must be True or False. Received: jit_compile={jit_compile!r}"
            )
        self.policy = policy
        self.cutout_size = cutout_size
        self.cutout_fill = cutout_fill
        self.value_range = _image_utils.validate_value_range(value_range)
        self.jit_compile = jit_compile
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_jit = False

        sub_policies = POLICIES[policy]
        self._op_ids = [augment_ops.op_ids([op for op, _, _ in sub]) for sub in sub_policies]
        self._probabilities = [[p for _, p, _ in sub] for sub in sub_policies]
        self._bins = [[b or 0 for _, _, b in sub] for sub in sub_policies]
        # [sub-policy, step, sign (-1, +1), NUM_VALUES]
        self._value_table = [
            [[op_values(op, b, sign) for sign in (-1.0, 1.0)] for op, _, b in sub]
            for sub in sub_policies
        ]
        self._translate_ids = augment_ops.op_ids(_TRANSLATE)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images, batch_size = _image_utils.images_and_batch_size(self, data)
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        random = self.backend.random
        sub_policies = random.randint(
            (batch_size,), 0, len(POLICIES[self.policy]), dtype="int32", seed=seed
        )
        probabilities = tf.gather(
            tf.constant(self._probabilities, tf.float32), sub_policies
        )
        apply = random.uniform((batch_size, 2), seed=seed) < probabilities
        signs = self.backend.numpy.where(
            random.uniform((batch_size, 2), seed=seed) < 0.5, -1.0, 1.0
        )
        transformation = {
            "sub_policies": sub_policies,
            "apply": apply,
            "signs": self.backend.cast(signs, "float32"),
        }
        if self.cutout_size:
            shape = tf.shape(images)
            size = tf.cast(tf.stack([shape[-3], shape[-2]]), tf.float32)
            where = random.uniform((batch_size, 2), seed=seed) * size
            transformation["cutout_centres"] = tf.cast(tf.floor(where), tf.int32)
        return transformation

    def transform_images(self, images, transformation=None, training=True):
        images = tf.convert_to_tensor(images)
        if not training or transformation is None:
            return tf.cast(images, self.compute_dtype)
        if images.shape[-1] not in (1, 3):
            raise ValueError(
                "`images` must have 1 or 3 channels for AutoAugment. "
                f"Received: images.shape={images.shape}"
            )
        x = images
        unbatched = x.shape.rank == 3
        if unbatched:
            x = x[None]
        sub_policies = tf.reshape(tf.cast(transformation["sub_policies"], tf.int32), [-1])
        apply = tf.reshape(tf.cast(transformation["apply"], tf.bool), [-1, 2])
        signs = tf.reshape(tf.cast(transformation["signs"], tf.float32), [-1, 2])
        shape = tf.shape(x)
        ops = tf.gather(tf.constant(self._op_ids, tf.int32), sub_policies)
        values = self._values(sub_policies, ops, signs, shape[2])
        if self.cutout_size:
            centres = tf.reshape(tf.cast(transformation["cutout_centres"], tf.int32), [-1, 2])
            ops = tf.concat([ops, tf.fill([shape[0], 1], augment_ops.OP_INDEX["cutout"])], 1)
            apply = tf.concat([apply, tf.ones([shape[0], 1], tf.bool)], 1)
            values = tf.concat([values, self._cutout_values(centres, shape)[:, None]], 1)
        x = _image_utils.on_uint8_scale(
            lambda x, dtype: augment_ops.apply_ops(
                x, ops, apply, values, clip=True, jit_compile=self.jit_compile, dtype=dtype
            ),
            x,
            self.value_range,
            self.compute_dtype,
        )
        return x[0] if unbatched else x

    def _values(self, sub_policies, ops, signs, width):
        """Registry values `[B, 2, NUM_VALUES]`; the translations' are set per
        size: torchvision's `int(+-linspace(0, 150 / 331 * size, 10)[bin])`
        pixels, negated by its inverse affine matrix (`(1, 0, -t, 0, 1, 0)`).
        torchvision passes `image_size[0]`, the width, for both directions."""
        sign_index = tf.cast(signs > 0, tf.int32)
        step = tf.broadcast_to(tf.range(2)[None], tf.shape(ops))
        table = tf.constant(self._value_table, tf.float64)
        sub = tf.broadcast_to(sub_policies[:, None], tf.shape(ops))
        values = tf.gather_nd(table, tf.stack([sub, step, sign_index], axis=-1))
        bins = tf.cast(tf.gather(tf.constant(self._bins, tf.int32), sub_policies), tf.float64)
        end = tf.cast(tf.cast(150.0 / 331.0 * tf.cast(width, tf.float64), tf.float32), tf.float64)
        # Correctly rounded float32 `bin * end / 9` (see `_linspace32`).
        m = tf.cast(tf.cast(bins * end / (NUM_BINS - 1), tf.float32), tf.float64)
        pixels = -tf.cast(tf.cast(tf.cast(signs, tf.float64) * m, tf.int32), tf.float64)
        is_translate = (ops == self._translate_ids[0]) | (ops == self._translate_ids[1])
        first = tf.where(is_translate, pixels, values[..., 0])
        return tf.concat([first[..., None], values[..., 1:]], axis=-1)

    def _cutout_values(self, centres, shape):
        half = self.cutout_size // 2
        height, width = shape[1], shape[2]
        row, col = centres[:, 0], centres[:, 1]
        box = [
            tf.maximum(row - half, 0),
            tf.maximum(col - half, 0),
            tf.minimum(row + half, height),
            tf.minimum(col + half, width),
            tf.fill(tf.shape(row), self.cutout_fill),
        ]
        return tf.cast(tf.stack(box, axis=1), tf.float64)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        raise NotImplementedError("AutoAugment does not transform bounding boxes.")

    def transform_segmentation_masks(self, segmentation_masks, transformation, training=True):
        raise NotImplementedError("AutoAugment does not transform segmentation masks.")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "policy": self.policy,
                "cutout_size": self.cutout_size,
                "cutout_fill": self.cutout_fill,
                "value_range": self.value_range,
                "jit_compile": self.jit_compile,
                "seed": self.seed,
            }
        )
        return config
