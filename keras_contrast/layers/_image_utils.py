"""Private helpers shared by the keras_contrast preprocessing layers."""

import math

import tensorflow as tf


def is_finite_number(value):
    """True for an int or float (not a bool) that is neither NaN nor infinite."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def validate_value_range(value_range, name="value_range"):
    """Returns `value_range` as a `(low, high)` tuple of floats or raises."""
    if (
        not isinstance(value_range, (tuple, list))
        or len(value_range) != 2
        or not all(is_finite_number(v) for v in value_range)
        or value_range[0] >= value_range[1]
    ):
        raise ValueError(
            f"`{name}` must be a tuple `(low, high)` of finite numbers with low < high. "
            f"Received: {name}={value_range}"
        )
    return tuple(value_range)


def validate_probability(value, name):
    if not is_finite_number(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"`{name}` must be in [0, 1]. Received: {name}={value}")
    return value


def validate_range(value, name, low=None, high=None, allow_equal=True):
    """Checks a `(min, max)` pair of numbers with min <= max within [low, high]."""
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(is_finite_number(v) for v in value)
        and (value[0] <= value[1] if allow_equal else value[0] < value[1])
    )
    if ok and low is not None:
        ok = value[0] >= low
    if ok and high is not None:
        ok = value[1] <= high
    if not ok:
        bounds = f" within [{low}, {high}]" if low is not None else ""
        raise ValueError(
            f"`{name}` must be a pair `(min, max)` of finite numbers with min <= max{bounds}. "
            f"Received: {name}={value}"
        )
    return tuple(value)


def check_image_rank(images, name="images"):
    rank = images.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            f"`{name}` must have rank 3 `[H, W, C]` or rank 4 `[B, H, W, C]`. "
            f"Received: {name}.shape={images.shape}"
        )
    return rank


def images_and_batch_size(layer, data):
    """The images of a layer's `data` (a tensor or a dict with `"images"`) and their batch
    size (1 for a single `[H, W, C]` image), for `get_random_transformation`."""
    images = data["images"] if isinstance(data, dict) else data
    shape = layer.backend.shape(images)
    if len(shape) not in (3, 4):
        raise ValueError(
            "`images` must have rank 3 `[H, W, C]` or rank 4 `[B, H, W, C]`. "
            f"Received: images.shape={shape}"
        )
    return images, 1 if len(shape) == 3 else shape[0]


def to_uint8(images, value_range):
    """Maps images in `value_range` to uint8 on the 0-255 scale (rounding, clipping)."""
    if images.dtype == tf.uint8 and tuple(value_range) == (0, 255):
        return images
    low, high = value_range
    x = tf.cast(images, tf.float32)
    if (low, high) != (0, 255):
        x = (x - low) * (255.0 / (high - low))
    x = tf.clip_by_value(tf.round(x), 0.0, 255.0)
    return tf.cast(x, tf.uint8)


def from_uint8(images, value_range, dtype):
    """Inverse of `to_uint8`: uint8 0-255 back to `value_range` in `dtype`."""
    dtype = tf.as_dtype(dtype)
    if dtype == tf.uint8 and tuple(value_range) == (0, 255):
        return images
    low, high = value_range
    x = tf.cast(images, tf.float32)
    if (low, high) != (0, 255):
        x = x * ((high - low) / 255.0) + low
    return tf.cast(x, dtype)


def on_uint8_scale(fn, images, value_range, dtype):
    """`fn(x, out_dtype)` on images mapped to the 0-255 scale, mapped back to
    `value_range` in `dtype`.

    On the 0-255 scale already, `fn` gets the images as they are and returns
    `dtype` itself (the augment_ops runners convert per image, inside their
    loop); otherwise the images are mapped to uint8 first (`to_uint8`) and
    `fn`'s uint8 result back (`from_uint8`).
    """
    if tuple(value_range) == (0, 255):
        return fn(images, dtype)
    out = fn(to_uint8(images, value_range), tf.uint8)
    return from_uint8(out, value_range, dtype)


def unless_empty(fn, images, empty=None):
    """`fn(images)`, or `images` itself for an empty batch.

    The per-image XLA loops cannot be compiled for a batch of 0 (their scatter has
    no row to update), so an empty batch skips them (`empty(images)`, by default
    `images` itself): statically when its size is known, else with a `tf.cond`
    (the untaken branch is never compiled).
    """
    empty = empty or (lambda x: x)
    batch = images.shape[0]
    if batch is not None:
        return empty(images) if batch == 0 else fn(images)
    return tf.cond(tf.shape(images)[0] > 0, lambda: fn(images), lambda: empty(images))
