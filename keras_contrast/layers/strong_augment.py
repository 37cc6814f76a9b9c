"""CLSA's strong augmentation: 14 PIL-style ops, chosen per image, vectorised."""

import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils, augment_ops

# The CLSA reference pool, in its order. Indices are the values of the
# `"op_indices"` entry of a transformation.
OP_NAMES = (
    "auto_contrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "identity",
    "posterize",
    "rotate",
    "sharpness",
    "shear_x",
    "shear_y",
    "solarize",
    "translate_x",
    "translate_y",
)
_OP = {name: i for i, name in enumerate(OP_NAMES)}
# Index of each op in the shared registry (`augment_ops.OPS`).
_REGISTRY_ID = augment_ops.op_ids(OP_NAMES)


@keras.saving.register_keras_serializable(package="keras_contrast")
class StrongAugment(BaseImagePreprocessingLayer):
    """CLSA's strong augmentation: `num_ops` random PIL-style ops per image.

    The pool is exactly the one of the CLSA reference implementation (itself
    FixMatch's RandAugment pool): AutoContrast, Brightness, Color, Contrast,
    Equalize, Identity, Posterize, Rotate, Sharpness, ShearX, ShearY, Solarize,
    TranslateX, TranslateY. For every image independently, `num_ops` ops are
    drawn with replacement; each is applied with probability `rate` at an
    integer magnitude `v` drawn uniformly from `magnitude_range` (per op and
    image). With `v` the magnitude:

    - Brightness / Color / Contrast / Sharpness: PIL `ImageEnhance` blend with
      factor `enhance_slope * v + enhance_offset` (0.09v + 0.05).
    - Posterize: keep `int(posterize_slope * v) + posterize_offset` bits.
    - Rotate: `rotate_slope * v` degrees (3v), random sign, about the centre.
    - ShearX / ShearY: `shear_slope * v` (0.03v), random sign.
    - TranslateX / TranslateY: `int(translate_slope * v * size)` pixels,
      random sign.
    - Solarize: invert values `>= 256 - int(solarize_slope * v)` (25.6v).

    The ops are those of the shared registry (`augment_ops`), bit for bit
    Pillow's on 8-bit values: blends truncate, geometric ops are Pillow's
    nearest-neighbour affine transform (its 16.16 fixed-point arithmetic,
    black fill), rotations use `Image.rotate`'s rounded matrix, Sharpness
    blends with PIL's 3x3 SMOOTH filter (border pixels kept), AutoContrast and
    Equalize follow `PIL.ImageOps`. Inputs are mapped from `value_range` to
    0-255 and rounded to integers first (float inputs are thereby quantised
    to 256 levels), and mapped back at the end; the output has the layer's
    compute dtype.

    Two implementations give bit-identical results (tested):

    - `jit_compile=True` (default): one XLA program per input shape loops
      over the images and, at each step, runs only the op the image drew (an
      XLA conditional). On CPU this is faster than the graph path
      (BENCHMARKS.md). The first batch of each new shape compiles (about
      1-2 s).
    - `jit_compile=False`: plain TensorFlow ops, vectorised over the batch:
      at each step the batch is partitioned by chosen op, each part gets its
      op only, and the parts are stitched back. No compilation, which suits
      eager debugging and accelerators where a per-image loop is slow.

    Unlike `keras.layers.RandAugment`, neither computes an op for an image
    that did not draw it. Works eagerly, in `tf.data.Dataset.map` (batched
    or not) and inside a model (CPU or GPU). The layer itself must not sit
    in a model compiled with `jit_compile=True` (`supports_jit` is False:
    the graph path has data-dependent shapes). Images must have 1 or 3
    channels.

    On CPU, run the process with `TF_CPU_ALLOCATOR_USE_BFC=true` (the
    recipes set it): TensorFlow's default allocator faults in fresh pages
    for every large tensor, which halves this layer's throughput at 224x224.

    Args:
        num_ops: number of ops drawn per image. Defaults to `5`.
        rate: probability that each drawn op is applied. Defaults to `0.5`.
        magnitude_range: `(min, max)` integers; `v` is uniform on
            `min..max` inclusive. Defaults to `(1, 9)` (the reference draws
            `np.random.randint(1, 10)`).
        enhance_slope: Defaults to `0.09`.
        enhance_offset: Defaults to `0.05`.
        posterize_slope: Defaults to `0.4`.
        posterize_offset: Defaults to `4`.
        rotate_slope: degrees per magnitude unit. Defaults to `3.0`.
        shear_slope: Defaults to `0.03`.
        translate_slope: fraction of the image size per unit. Defaults to
            `0.03`.
        solarize_slope: threshold decrement per unit on the 0-255 scale.
            Defaults to `25.6`.
        value_range: `(low, high)` of the input values. Defaults to
            `(0, 255)`.
        jit_compile: run the XLA implementation (see above). Defaults to
            `True`.
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments (`name`, `dtype`).

    Returns:
        Images with the input's shape, in `value_range`, in the compute dtype.
        A transformation is a dict with `"op_indices"` (int32 `[B, num_ops]`,
        indices into `OP_NAMES`), `"apply"` (bool), `"magnitudes"` (int32)
        and `"signs"` (float32, +-1), all `[B, num_ops]`.

    Example:

    ```python
    import numpy as np
    images = np.random.randint(0, 256, (8, 32, 32, 3)).astype("uint8")
    strong = StrongAugment(seed=1)
    out = strong(images)  # float32 [8, 32, 32, 3] in [0, 255]
    ```

    References:
        - [CLSA, Wang & Qi 2021](https://arxiv.org/abs/2104.07713)
        - [FixMatch, Sohn et al. 2020](https://arxiv.org/abs/2001.07685)
    """

    _USE_BASE_FACTOR = False
    OP_NAMES = OP_NAMES

    def __init__(
        self,
        num_ops=5,
        rate=0.5,
        magnitude_range=(1, 9),
        enhance_slope=0.09,
        enhance_offset=0.05,
        posterize_slope=0.4,
        posterize_offset=4,
        rotate_slope=3.0,
        shear_slope=0.03,
        translate_slope=0.03,
        solarize_slope=25.6,
        value_range=(0, 255),
        jit_compile=True,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(jit_compile, bool):
            raise ValueError(
                f"`jit_compile` must be True or False. Received: jit_compile={jit_compile}"
            )
        if not isinstance(num_ops, int) or isinstance(num_ops, bool) or num_ops < 0:
            raise ValueError(
                f"`num_ops` must be an integer >= 0. Received: num_ops={num_ops}"
            )
        _image_utils.validate_probability(rate, "rate")
        if (
            not isinstance(magnitude_range, (tuple, list))
            or len(magnitude_range) != 2
            or not all(isinstance(v, int) for v in magnitude_range)
            or not 0 <= magnitude_range[0] <= magnitude_range[1]
        ):
            raise ValueError(
                "`magnitude_range` must be a pair of integers `(min, max)` with "
                f"0 <= min <= max. Received: magnitude_range={magnitude_range}"
            )
        for name, value in (
            ("enhance_slope", enhance_slope),
            ("enhance_offset", enhance_offset),
            ("posterize_slope", posterize_slope),
            ("posterize_offset", posterize_offset),
            ("rotate_slope", rotate_slope),
            ("shear_slope", shear_slope),
            ("translate_slope", translate_slope),
            ("solarize_slope", solarize_slope),
        ):
            if not _image_utils.is_finite_number(value) or value < 0:
                raise ValueError(
                    f"`{name}` must be a finite number >= 0. Received: {name}={value}"
                )
        self.num_ops = num_ops
        self.rate = rate
        self.magnitude_range = tuple(magnitude_range)
        self.enhance_slope = enhance_slope
        self.enhance_offset = enhance_offset
        self.posterize_slope = posterize_slope
        self.posterize_offset = posterize_offset
        self.rotate_slope = rotate_slope
        self.shear_slope = shear_slope
        self.translate_slope = translate_slope
        self.solarize_slope = solarize_slope
        self.value_range = _image_utils.validate_value_range(value_range)
        self.jit_compile = jit_compile
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_jit = False

        # Per-magnitude parameter tables, computed in Python (double) as the
        # reference does, indexed by the magnitude `v`.
        vs = range(self.magnitude_range[1] + 1)
        self._enhance_table = [enhance_slope * v + enhance_offset for v in vs]
        self._translate_table = [translate_slope * v for v in vs]
        # Blends with factors in [0, 1] stay within 0..255: no clipping pass.
        self._enhance_clip = max(self._enhance_table) > 1.0
        self._value_table = [
            [[self._op_values(name, v, sign) for sign in (-1.0, 1.0)] for v in vs]
            for name in OP_NAMES
        ]

    def _op_values(self, name, v, sign):
        """The registry values of op `name` at magnitude `v` with sign `sign`
        (Python floats; the translations' pixel shifts are set per image size)."""
        values = [0.0] * augment_ops.NUM_VALUES
        if name in ("brightness", "color", "contrast", "sharpness"):
            values[0] = self._enhance_table[v]
        elif name == "posterize":
            values[0] = min(8, max(0, int(self.posterize_slope * v) + self.posterize_offset))
        elif name == "solarize":
            values[0] = 256 - int(self.solarize_slope * v)
        elif name == "rotate":
            values[:2] = augment_ops.rotation_values(sign * (self.rotate_slope * v))
        elif name in ("shear_x", "shear_y"):
            values[0] = sign * (self.shear_slope * v)
        return values

    # ------------------------------------------------------------------ random

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images, batch_size = _image_utils.images_and_batch_size(self, data)
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        random = self.backend.random
        size = (batch_size, self.num_ops)
        op_indices = random.randint(size, 0, len(OP_NAMES), dtype="int32", seed=seed)
        apply = random.uniform(size, seed=seed) < self.rate
        magnitudes = random.randint(
            size,
            self.magnitude_range[0],
            self.magnitude_range[1] + 1,
            dtype="int32",
            seed=seed,
        )
        signs = self.backend.numpy.where(
            random.uniform(size, seed=seed) < 0.5, -1.0, 1.0
        )
        return {
            "op_indices": op_indices,
            "apply": apply,
            "magnitudes": magnitudes,
            "signs": self.backend.cast(signs, "float32"),
        }

    # --------------------------------------------------------------- transform

    def transform_images(self, images, transformation=None, training=True):
        images = tf.convert_to_tensor(images)
        if not training or transformation is None or self.num_ops == 0:
            return tf.cast(images, self.compute_dtype)
        channels = images.shape[-1]
        if channels not in (1, 3):
            raise ValueError(
                "`images` must have 1 or 3 channels for StrongAugment. "
                f"Received: images.shape={images.shape}"
            )
        op_indices = tf.cast(transformation["op_indices"], tf.int32)
        magnitudes = tf.cast(transformation["magnitudes"], tf.int32)
        signs = tf.cast(transformation["signs"], tf.float32)
        shape = tf.shape(images)
        return _image_utils.on_uint8_scale(
            lambda x, dtype: augment_ops.apply_ops(
                x,
                tf.gather(tf.constant(_REGISTRY_ID, tf.int32), op_indices),
                tf.cast(transformation["apply"], tf.bool),
                self._values(op_indices, magnitudes, signs, shape[1], shape[2]),
                clip=self._enhance_clip,
                jit_compile=self.jit_compile,
                dtype=dtype,
            ),
            images,
            self.value_range,
            self.compute_dtype,
        )

    def _values(self, op_indices, magnitudes, signs, height, width):
        """The registry values (float64 `[B, num_ops, NUM_VALUES]`) of each step:
        looked up per (op, magnitude, sign) in `self._value_table`, except the
        translations' pixel shifts, `int(+-translate_slope * v * size)`, which
        depend on the image size (truncated, as the reference)."""
        sign_index = tf.cast(signs > 0, tf.int32)
        values = tf.gather_nd(
            tf.constant(self._value_table, tf.float64),
            tf.stack([op_indices, magnitudes, sign_index], axis=-1),
        )
        fraction = tf.cast(signs, tf.float64) * tf.gather(
            tf.constant(self._translate_table, tf.float64), magnitudes
        )
        shift = {
            _OP["translate_x"]: fraction * tf.cast(width, tf.float64),
            _OP["translate_y"]: fraction * tf.cast(height, tf.float64),
        }
        first = values[..., 0]
        for op, pixels in shift.items():
            truncated = tf.cast(tf.cast(pixels, tf.int32), tf.float64)
            first = tf.where(op_indices == op, truncated, first)
        return tf.concat([first[..., None], values[..., 1:]], axis=-1)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_bounding_boxes(self, bounding_boxes, transformation, training=True):
        raise NotImplementedError(
            "StrongAugment does not transform bounding boxes (geometric ops)."
        )

    def transform_segmentation_masks(
        self, segmentation_masks, transformation, training=True
    ):
        raise NotImplementedError(
            "StrongAugment does not transform segmentation masks."
        )

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_ops": self.num_ops,
                "rate": self.rate,
                "magnitude_range": self.magnitude_range,
                "enhance_slope": self.enhance_slope,
                "enhance_offset": self.enhance_offset,
                "posterize_slope": self.posterize_slope,
                "posterize_offset": self.posterize_offset,
                "rotate_slope": self.rotate_slope,
                "shear_slope": self.shear_slope,
                "translate_slope": self.translate_slope,
                "solarize_slope": self.solarize_slope,
                "value_range": self.value_range,
                "jit_compile": self.jit_compile,
                "seed": self.seed,
            }
        )
        return config
