"""Argument checks and small tensor helpers shared by the data sources and the pipeline."""

import numbers

import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def check_split_choice(split, choices):
    if split not in choices:
        raise ValueError(
            f"`split` must be one of {tuple(choices)}. Received: split={split!r}"
        )


def check_image_size(image_size):
    """Returns `image_size` as a `(height, width)` tuple of ints, or `None`."""
    if image_size is None:
        return None
    received = image_size
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = image_size
    except (TypeError, ValueError):
        height = width = None
    valid = all(
        isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0
        for v in (height, width)
    )
    if not valid:
        raise ValueError(
            "`image_size` must be None, a positive int or a (height, width) pair of "
            f"positive ints. Received: image_size={received!r}"
        )
    return int(height), int(width)


def check_input_context(input_context):
    if input_context is not None and not isinstance(
        input_context, tf.distribute.InputContext
    ):
        raise ValueError(
            "`input_context` must be None or a `tf.distribute.InputContext`. "
            f"Received: input_context={input_context!r}"
        )


def shard(dataset, input_context):
    """Keeps this input pipeline's share of `dataset` (a no-op for one pipeline)."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return dataset
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def to_uint8_rgb(image, image_size=None):
    """Converts a decoded image to `uint8` RGB `[height, width, 3]`, resized if asked."""
    if image.shape.rank is not None and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    if image.dtype != tf.uint8:
        image = tf.image.convert_image_dtype(image, tf.uint8, saturate=True)
    if image_size is not None:
        image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        image = tf.ensure_shape(image, (*image_size, 3))
    return image


def resize_dataset(dataset, image_size):
    """Maps `(image, label)` pairs to images resized to `image_size` (uint8)."""
    return dataset.map(
        lambda image, label: (to_uint8_rgb(image, image_size), label),
        num_parallel_calls=AUTOTUNE,
    )
