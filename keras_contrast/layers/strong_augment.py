"""CLSA's strong augmentation: 14 PIL-style ops, chosen per image, vectorised."""

import math

import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils

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
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")

# Each op runs on its own part of the batch; the five geometric ops share one
# part (one batched projective transform with per-image matrices).
_GROUPS = (
    "identity",
    "auto_contrast",
    "brightness",
    "color",
    "contrast",
    "equalize",
    "posterize",
    "sharpness",
    "solarize",
    "geometric",
)
_GROUP_OF_OP = [
    _GROUPS.index("geometric") if name in _GEOMETRIC else _GROUPS.index(name)
    for name in OP_NAMES
]


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

    Like the reference, the ops work on 8-bit values with PIL's semantics:
    blends truncate, geometric ops use nearest resampling with PIL's
    pixel-centre convention and black fill, Sharpness blends with PIL's
    3x3 SMOOTH filter (border pixels kept; the filter output is rounded),
    AutoContrast and Equalize follow `PIL.ImageOps`. Inputs are mapped from
    `value_range` to 0-255 and rounded to integers first (float inputs are
    thereby quantised to 256 levels), and mapped back at the end; the output
    has the layer's compute dtype.

    Two implementations give bit-identical results (tested):

    - `jit_compile=True` (default): one XLA program per input shape loops
      over the images and, at each step, runs only the op the image drew (an
      XLA conditional); geometric ops are a gather (`warp_nearest`). On CPU
      this is 1.9x (32x32) to 3x (224x224) faster than the graph path
      (BENCHMARKS.md). The first batch of each new shape compiles (about
      1-2 s).
    - `jit_compile=False`: plain TensorFlow ops, vectorised over the batch:
      at each step the batch is partitioned by chosen op, each part gets its
      op only, and the parts are stitched back; all geometric ops of a step
      run as one batched `ImageProjectiveTransformV3` with per-image
      matrices. No compilation, which suits eager debugging and accelerators
      where a per-image loop is slow.

    Unlike `keras.layers.RandAugment`, neither computes an op for an image
    that did not draw it. Works eagerly, in `tf.data.Dataset.map` (batched
    or not) and inside a model (CPU or GPU). The layer itself must not sit
    in a model compiled with `jit_compile=True` (`supports_jit` is False:
    the graph path has data-dependent shapes). Blends are float32
    `d + f * (x - d)`, truncated, with each product and sum rounded to
    float32 separately (no FMA), which reproduces Pillow bit for bit;
    Solarize and Posterize stay on uint8 (xor / and masks).
    Images must have 1 or 3 channels.

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
            if not isinstance(value, (int, float)) or value < 0:
                raise ValueError(
                    f"`{name}` must be a number >= 0. Received: {name}={value}"
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
        self._bits_table = [
            min(8, max(0, int(posterize_slope * v) + posterize_offset)) for v in vs
        ]
        self._degrees_table = [rotate_slope * v for v in vs]
        self._shear_table = [shear_slope * v for v in vs]
        self._translate_table = [translate_slope * v for v in vs]
        self._threshold_table = [256 - int(solarize_slope * v) for v in vs]
        # Blends with factors in [0, 1] stay within 0..255: no clipping pass.
        self._enhance_clip = max(self._enhance_table) > 1.0

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
        x = _image_utils.to_uint8(images, self.value_range)
        op_indices = tf.cast(transformation["op_indices"], tf.int32)
        apply = tf.cast(transformation["apply"], tf.bool)
        magnitudes = tf.cast(transformation["magnitudes"], tf.int32)
        signs = tf.cast(transformation["signs"], tf.float32)
        if self.jit_compile:
            x = self._transform_per_image(x, op_indices, apply, magnitudes, signs)
            return _image_utils.from_uint8(x, self.value_range, self.compute_dtype)
        static_shape = x.shape
        for step in range(self.num_ops):
            x = self._apply_step(
                x,
                op_indices[:, step],
                apply[:, step],
                magnitudes[:, step],
                signs[:, step],
            )
            x.set_shape(static_shape)
        return _image_utils.from_uint8(x, self.value_range, self.compute_dtype)

    def _apply_step(self, x, ops, apply, magnitudes, signs):
        group_of_op = tf.constant(_GROUP_OF_OP, tf.int32)
        groups = tf.where(apply, tf.gather(group_of_op, ops), 0)
        n = len(_GROUPS)
        indices = tf.dynamic_partition(tf.range(tf.shape(x)[0]), groups, n)
        parts = tf.dynamic_partition(x, groups, n)
        mags = tf.dynamic_partition(magnitudes, groups, n)
        g = _GROUPS.index
        enhance = tf.constant(self._enhance_table, tf.float32)
        clip = self._enhance_clip
        outputs = [None] * n
        outputs[g("identity")] = parts[g("identity")]
        outputs[g("auto_contrast")] = auto_contrast(parts[g("auto_contrast")])
        outputs[g("equalize")] = equalize(parts[g("equalize")])
        outputs[g("brightness")] = brightness(
            parts[g("brightness")], tf.gather(enhance, mags[g("brightness")]), clip
        )
        outputs[g("color")] = color(
            parts[g("color")], tf.gather(enhance, mags[g("color")]), clip
        )
        outputs[g("contrast")] = contrast(
            parts[g("contrast")], tf.gather(enhance, mags[g("contrast")]), clip
        )
        outputs[g("sharpness")] = sharpness(
            parts[g("sharpness")], tf.gather(enhance, mags[g("sharpness")]), clip
        )
        outputs[g("posterize")] = posterize(
            parts[g("posterize")],
            tf.gather(tf.constant(self._bits_table, tf.int32), mags[g("posterize")]),
        )
        outputs[g("solarize")] = solarize(
            parts[g("solarize")],
            tf.gather(
                tf.constant(self._threshold_table, tf.int32), mags[g("solarize")]
            ),
        )
        k = g("geometric")
        geo_ops = tf.dynamic_partition(ops, groups, n)[k]
        geo_signs = tf.dynamic_partition(signs, groups, n)[k]
        outputs[k] = self._geometric(parts[k], geo_ops, mags[k], geo_signs)
        return tf.dynamic_stitch(indices, outputs)

    def _transform_per_image(self, x, op_indices, apply, magnitudes, signs):
        """The `jit_compile=True` path: one XLA program, a loop over images.

        Each image runs only the ops it drew (an XLA conditional per step), so
        no work is spent on ops an image did not draw and nothing is
        partitioned or stitched. The per-step parameters are looked up here,
        vectorised, from the same tables as the graph path.
        """
        groups = tf.where(apply, tf.gather(tf.constant(_GROUP_OF_OP, tf.int32), op_indices), 0)
        factors = tf.gather(tf.constant(self._enhance_table, tf.float32), magnitudes)
        bits = tf.gather(tf.constant(self._bits_table, tf.int32), magnitudes)
        thresholds = tf.gather(tf.constant(self._threshold_table, tf.int32), magnitudes)
        shape = tf.shape(x)
        transforms = self._transforms(
            tf.reshape(op_indices, [-1]),
            tf.reshape(magnitudes, [-1]),
            tf.reshape(signs, [-1]),
            shape[1],
            shape[2],
        )
        transforms = tf.reshape(transforms, [shape[0], self.num_ops, 8])
        out = _image_utils.unless_empty(
            lambda images: _augment_per_image(
                images, groups, factors, bits, thresholds, transforms, self._enhance_clip
            ),
            x,
        )
        out.set_shape(x.shape)
        return out

    def _transforms(self, ops, magnitudes, signs, height, width):
        """`ImageProjectiveTransformV3` transforms (float32 `[n, 8]`) of the
        geometric ops; rows of other ops are translations and never used."""
        height = tf.cast(height, tf.float64)
        width = tf.cast(width, tf.float64)
        signs64 = tf.cast(signs, tf.float64)
        degrees = signs64 * tf.gather(
            tf.constant(self._degrees_table, tf.float64), magnitudes
        )
        shear = signs64 * tf.gather(tf.constant(self._shear_table, tf.float64), magnitudes)
        fraction = signs64 * tf.gather(
            tf.constant(self._translate_table, tf.float64), magnitudes
        )
        # int() of the signed pixel shift, as the reference: truncation.
        shift_x = tf.cast(tf.cast(fraction * width, tf.int32), tf.float64)
        shift_y = tf.cast(tf.cast(fraction * height, tf.int32), tf.float64)
        matrices = pil_affine_matrices(ops, degrees, shear, shift_x, shift_y, height, width)
        return tf.cast(pil_to_tf_transforms(matrices), tf.float32)

    def _geometric(self, images, ops, magnitudes, signs):
        shape = tf.shape(images)
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=images,
            transforms=self._transforms(ops, magnitudes, signs, shape[1], shape[2]),
            output_shape=shape[1:3],
            fill_value=0.0,
            interpolation="NEAREST",
            fill_mode="CONSTANT",
        )

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


# ---------------------------------------------------------------------------
# The ops. Each takes uint8 images `[n, H, W, C]` (C in {1, 3}) and per-image
# parameters `[n]`, and returns uint8 images of the same shape.


_GRAY_WEIGHTS = (19595.0, 38470.0, 7471.0)


def _gray_float(images_float):
    """PIL's `convert("L")` on float32 `[n, H, W, C]`: `[n, H, W, 1]` float32.

    (19595 R + 38470 G + 7471 B + 2**15) >> 16, computed in float32: every
    product and partial sum is an integer below 2**24, hence exact in any
    order. One reduction over the channel axis (rather than three strided
    channel slices) keeps XLA's loops vectorised.
    """
    if images_float.shape[-1] == 1:
        return images_float
    total = tf.reduce_sum(
        images_float * tf.constant(_GRAY_WEIGHTS), axis=-1, keepdims=True
    )
    return tf.floor((total + 32768.0) * (1.0 / 65536.0))


def _rounded(value):
    """Rounds a float64 result to float32.

    The float32 ops of the reference are computed as float64 ops, each rounded
    back to float32 with this. That gives the same value: float64 has more
    than 2 * 24 + 2 mantissa bits, so double rounding cannot change a sum,
    product or quotient of float32 values. It also stops a compiler (XLA on
    CPU, nvcc on GPU) from fusing a multiply and an add into one FMA, which
    rounds once and does not match Pillow.
    """
    return tf.cast(tf.cast(value, tf.float32), tf.float64)


def _blend(degenerate, images, factors, clip=True):
    """PIL `Image.blend(degenerate, image, f)`: truncated `d + f * (x - d)`.

    `degenerate` and `images` are float32 (integer values 0..255). With
    `clip=False` (all factors in [0, 1]) the result already lies in 0..255.
    Computed in float32 arithmetic, exactly as PIL (see `_rounded`).
    """
    f = tf.cast(tf.reshape(factors, [-1, 1, 1, 1]), tf.float64)
    d = tf.cast(degenerate, tf.float64)
    # `x - d` is an exact integer; the product and the sum are rounded.
    out = _rounded(d + _rounded(f * (tf.cast(images, tf.float64) - d)))
    if clip:
        out = tf.clip_by_value(out, 0.0, 255.0)
    return tf.cast(out, tf.uint8)  # Truncation, as PIL's float -> UINT8.


def auto_contrast(images):
    """`PIL.ImageOps.autocontrast`: per channel, `(x - lo) * 255 // (hi - lo)`.

    In float32: `(x - lo) * 255` is exact and a correctly rounded quotient of
    integers below 2**16 never reaches the next integer, so `floor` is exact.
    Flat channels map through `lo = 0, span = 255`, i.e. unchanged.
    """
    lo = tf.cast(tf.reduce_min(images, axis=[1, 2], keepdims=True), tf.float32)
    hi = tf.cast(tf.reduce_max(images, axis=[1, 2], keepdims=True), tf.float32)
    flat = hi <= lo
    lo = tf.where(flat, 0.0, lo)
    span = tf.where(flat, 255.0, hi - lo)
    x = tf.cast(images, tf.float32)
    return tf.cast(tf.floor((x - lo) * 255.0 / span), tf.uint8)


def brightness(images, factors, clip=True):
    # d = 0: `0 + f * (x - 0)` is `f * x` exactly.
    f = tf.reshape(factors, [-1, 1, 1, 1])
    out = f * tf.cast(images, tf.float32)
    if clip:
        out = tf.clip_by_value(out, 0.0, 255.0)
    return tf.cast(out, tf.uint8)


def color(images, factors, clip=True):
    x = tf.cast(images, tf.float32)
    return _blend(_gray_float(x), x, factors, clip)


def contrast(images, factors, clip=True):
    x = tf.cast(images, tf.float32)
    gray = tf.cast(_gray_float(x), tf.int32)
    pixels = tf.shape(gray)[1] * tf.shape(gray)[2]
    total = tf.reduce_sum(gray, axis=[1, 2, 3], keepdims=True)
    # int(mean + 0.5), exactly.
    mean = tf.cast((2 * total + pixels) // (2 * pixels), tf.float32)
    return _blend(mean, x, factors, clip)


def sharpness(images, factors, clip=True):
    """PIL `ImageEnhance.Sharpness`: blend with the 3x3 SMOOTH filter.

    Border pixels keep their value (PIL copies them into the filtered image,
    and `blend(x, x, f)` is `x`), so only the interior is blended; an image
    with a side under 3 pixels has no interior and is returned as it is. The
    3x3 sum (centre weight 5) is separable box + 4 centre, in float32 (exact
    integers); the filter output is rounded: `floor((sum + 6) / 13)`. Rows
    are flattened to `[n, H, W * C]`, where a one-pixel shift is a shift by
    `C`: slices along a long contiguous axis vectorise, along `C` they do not.
    The sums run on a zero-padded copy, so every shape (1-pixel sides, sizes
    known only when XLA compiles) has the same ops; the border is then taken
    from the input.
    """
    shape = tf.shape(images)
    c = images.shape[-1]
    rows = tf.reshape(images, [shape[0], shape[1], shape[2] * c])
    centre = tf.cast(rows, tf.float32)
    x = tf.pad(centre, [[0, 0], [1, 1], [c, c]])
    across = x[:, :, : -2 * c] + x[:, :, c:-c] + x[:, :, 2 * c :]
    box = across[:, :-2] + across[:, 1:-1] + across[:, 2:]
    smooth = tf.floor((box + 4.0 * centre + 6.0) / 13.0)
    blended = _blend(smooth[..., None], centre[..., None], factors, clip)[..., 0]
    row = tf.range(shape[1])[:, None]
    column = tf.range(shape[2] * c)[None, :] // c
    interior = (row > 0) & (row < shape[1] - 1) & (column > 0) & (column < shape[2] - 1)
    out = tf.where(interior[None], blended, rows)
    return tf.reshape(out, shape)


def equalize(images):
    """`PIL.ImageOps.equalize`, per image and channel, via one `bincount`."""
    x = tf.cast(images, tf.int32)
    shape = tf.shape(x)
    # A static batch size keeps the bincount length a constant (XLA needs it).
    n = images.shape[0] if images.shape[0] is not None else shape[0]
    channels = images.shape[-1]
    pixels = shape[1] * shape[2]
    offsets = tf.reshape(tf.range(n * channels) * 256, [n, 1, 1, channels])
    flat = tf.reshape(x + offsets, [-1])
    # The raw op takes the length as is: `tf.math.bincount` derives it from
    # the data's maximum, which XLA cannot treat as a constant.
    hist = tf.raw_ops.DenseBincount(
        input=flat,
        size=n * channels * 256,
        weights=tf.zeros([0], tf.int32),
        binary_output=False,
    )
    hist = tf.reshape(hist, [n * channels, 256])
    levels = tf.range(256)
    last = tf.reduce_max(tf.where(hist > 0, levels, -1), axis=1)
    last_count = tf.gather(hist, tf.maximum(last, 0), batch_dims=1)
    step = (pixels - last_count) // 255
    cum = tf.cumsum(hist, axis=1, exclusive=True)
    safe_step = tf.maximum(step, 1)[:, None]
    lut = tf.minimum((safe_step // 2 + cum) // safe_step, 255)
    lut = tf.where(step[:, None] > 0, lut, levels[None, :])
    out = tf.gather(tf.reshape(lut, [-1]), flat)
    return tf.cast(tf.reshape(out, shape), tf.uint8)


def posterize(images, bits):
    mask = tf.bitwise.left_shift(255, 8 - bits) % 256
    mask = tf.cast(tf.reshape(mask, [-1, 1, 1, 1]), tf.uint8)
    return tf.bitwise.bitwise_and(images, mask)


def solarize(images, thresholds):
    """Invert values `>= t`: `x ^ 255` where inverted, on uint8.

    `thresholds` are int32 (any value: <= 0 inverts all, >= 256 none).
    """
    t = tf.reshape(thresholds, [-1, 1, 1, 1])
    t_u8 = tf.cast(tf.clip_by_value(t, 0, 255), tf.uint8)
    flip = tf.cast(tf.where(t > 255, 0, 255), tf.uint8)
    mask = tf.cast(images >= t_u8, tf.uint8) * flip
    return tf.bitwise.bitwise_xor(images, mask)


def pil_affine_matrices(ops, degrees, shear, shift_x, shift_y, height, width):
    """Per-image PIL affine coefficients `(a, b, c, d, e, f)`, float64 `[n, 6]`.

    PIL maps an output pixel centre `(x + .5, y + .5)` to the input point
    `(a x' + b y' + c, d x' + e y' + f)` and takes the pixel containing it.
    """
    angle = -degrees * (math.pi / 180.0)
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    zeros, ones = tf.zeros_like(angle), tf.ones_like(angle)
    rotate = tf.stack(
        [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy],
        axis=1,
    )
    shear_x = tf.stack([ones, shear, zeros, zeros, ones, zeros], axis=1)
    shear_y = tf.stack([ones, zeros, zeros, shear, ones, zeros], axis=1)
    translate_x = tf.stack([ones, zeros, shift_x, zeros, ones, zeros], axis=1)
    translate_y = tf.stack([ones, zeros, zeros, zeros, ones, shift_y], axis=1)
    ops = ops[:, None]
    out = translate_y
    for name, matrix in (
        ("rotate", rotate),
        ("shear_x", shear_x),
        ("shear_y", shear_y),
        ("translate_x", translate_x),
    ):
        out = tf.where(ops == _OP[name], matrix, out)
    return out


def pil_to_tf_transforms(matrices):
    """PIL pixel-centre affine -> `ImageProjectiveTransformV3` transforms.

    TF puts pixel centres on integers and rounds: `round(u - .5)` equals
    PIL's `floor(u)` for the same input point `u`.
    """
    a, b, c, d, e, f = tf.unstack(matrices, axis=1)
    zeros = tf.zeros_like(a)
    return tf.stack(
        [a, b, c + 0.5 * (a + b - 1.0), d, e, f + 0.5 * (d + e - 1.0), zeros, zeros],
        axis=1,
    )


def warp_nearest(images, transforms):
    """`ImageProjectiveTransformV3` (NEAREST, CONSTANT fill 0) as a gather.

    Same float32 arithmetic as TensorFlow's kernel: output pixel `(x, y)`
    reads input `(round(u), round(v))` with `u = (t0 x + t1 y + t2) / p`,
    `v = (t3 x + t4 y + t5) / p`, `p = t6 x + t7 y + 1`, and `round` half away
    from zero (`std::round`); points outside the image read 0. Unlike the
    TensorFlow op it compiles with XLA.

    Args:
        images: `[n, H, W, C]`, any dtype.
        transforms: float32 `[n, 8]`.

    Returns:
        The warped images, `[n, H, W, C]`, dtype of `images`.
    """
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    t = [tf.reshape(tf.cast(transforms[:, k], tf.float64), [-1, 1, 1]) for k in range(8)]
    xs = tf.reshape(tf.cast(tf.range(width), tf.float64), [1, 1, -1])
    ys = tf.reshape(tf.cast(tf.range(height), tf.float64), [1, -1, 1])

    def affine(a, b, c):  # float32 `(a x + b y) + c`, rounded as the kernel.
        return _rounded(_rounded(_rounded(a * xs) + _rounded(b * ys)) + c)

    projection = affine(t[6], t[7], 1.0)
    u = _rounded(affine(t[0], t[1], t[2]) / projection)
    v = _rounded(affine(t[3], t[4], t[5]) / projection)

    def round_half_away(z):
        whole = tf.sign(z) * tf.floor(tf.abs(z))
        return whole + tf.where(tf.abs(z - whole) >= 0.5, tf.sign(z), 0.0)

    # Clip in float first: far-away points must not overflow int32.
    bound = tf.cast(tf.maximum(height, width) + 1, tf.float64)
    col = tf.cast(tf.clip_by_value(round_half_away(u), -1.0, bound), tf.int32)
    row = tf.cast(tf.clip_by_value(round_half_away(v), -1.0, bound), tf.int32)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    index = (tf.reshape(tf.range(n), [-1, 1, 1]) * height + tf.clip_by_value(
        row, 0, height - 1
    )) * width + tf.clip_by_value(col, 0, width - 1)
    pixels = tf.gather(tf.reshape(images, [n * height * width, -1]), index)
    return tf.where(inside[..., None], pixels, tf.zeros_like(pixels))


@tf.function(jit_compile=True, autograph=False)
def _augment_per_image(images, groups, factors, bits, thresholds, transforms, clip):
    """All steps of all images in one XLA program: a loop over images and
    steps with a conditional per step, so each image computes only its ops.

    `images` uint8 `[B, H, W, C]`; `groups` int32 `[B, num_ops]` (indices into
    `_GROUPS`, 0 = identity); the per-op parameters `[B, num_ops]` (transforms
    `[B, num_ops, 8]`); `clip` (Python bool) whether blends may leave 0..255.
    """
    num_ops = groups.shape[1]

    def per_image(i, out):
        def per_step(s, image):
            batch = image[None]
            factor = factors[i, s][None]
            branches = {
                "identity": lambda: batch,
                "auto_contrast": lambda: auto_contrast(batch),
                "brightness": lambda: brightness(batch, factor, clip),
                "color": lambda: color(batch, factor, clip),
                "contrast": lambda: contrast(batch, factor, clip),
                "equalize": lambda: equalize(batch),
                "posterize": lambda: posterize(batch, bits[i, s][None]),
                "sharpness": lambda: sharpness(batch, factor, clip),
                "solarize": lambda: solarize(batch, thresholds[i, s][None]),
                "geometric": lambda: warp_nearest(batch, transforms[i, s][None]),
            }
            result = tf.switch_case(groups[i, s], [branches[name] for name in _GROUPS])[0]
            # Unknown height/width (tf.data): keep the loop variable's static shape.
            return s + 1, tf.ensure_shape(result, image.shape)

        _, image = tf.while_loop(
            lambda s, _: s < num_ops, per_step, (tf.constant(0), images[i])
        )
        return i + 1, tf.tensor_scatter_nd_update(out, [[i]], image[None])

    _, out = tf.while_loop(
        lambda i, _: i < tf.shape(images)[0],
        per_image,
        (tf.constant(0), tf.zeros_like(images)),
    )
    return out
