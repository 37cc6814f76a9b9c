"""torchvision-style RandomResizedCrop, per image, batched."""

import math

import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils

_TRIES = 10


@keras.saving.register_keras_serializable(package="keras_contrast")
class RandomResizedCrop(BaseImagePreprocessingLayer):
    """Crops a random area and aspect ratio of each image, resized to a size.

    torchvision semantics: for each image, up to 10 tries draw an area
    fraction uniformly from `scale` and an aspect ratio log-uniformly from
    `ratio`; the first try whose box `w = round(sqrt(A r))`,
    `h = round(sqrt(A / r))` fits in the image is used, at a uniformly random
    position; if none fits, a centre crop clamped to `ratio` is used. All
    tries are drawn at once, so the layer is vectorised over the batch, and
    the crops are resized together with `crop_and_resize` (bilinear, sampling
    the crop's first and last pixel centres at the output's borders).

    At inference (`training=False`) the whole image is resized.

    Args:
        height: output height.
        width: output width.
        scale: `(min, max)` fraction of the image area. Defaults to
            `(0.08, 1.0)`.
        ratio: `(min, max)` aspect ratio (width / height). Defaults to
            `(3/4, 4/3)`.
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments.

    Returns:
        float images `[B, height, width, C]` (or `[height, width, C]`). A
        transformation is `{"crop_boxes": int32 [B, 4]}` holding
        `(top, left, crop_height, crop_width)` in input pixels.

    Example:

    ```python
    import numpy as np
    crop = RandomResizedCrop(24, 24, scale=(0.2, 1.0), seed=0)
    out = crop(np.zeros((4, 32, 32, 3), "float32"))  # [4, 24, 24, 3]
    ```
    """

    _USE_BASE_FACTOR = False

    def __init__(
        self,
        height,
        width,
        scale=(0.08, 1.0),
        ratio=(3.0 / 4.0, 4.0 / 3.0),
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        for name, value in (("height", height), ("width", width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer. Received: {name}={value}"
                )
        self.height = height
        self.width = width
        self.scale = _image_utils.validate_range(scale, "scale", 0.0, 1.0)
        if self.scale[1] <= 0:
            raise ValueError(f"`scale` must have max > 0. Received: scale={scale}")
        self.ratio = _image_utils.validate_range(ratio, "ratio")
        if self.ratio[0] <= 0:
            raise ValueError(f"`ratio` must be positive. Received: ratio={ratio}")
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images, batch_size = _image_utils.images_and_batch_size(self, data)
        in_h, in_w = self.backend.shape(images)[-3:-1]
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        random = self.backend.random
        area_u = random.uniform((batch_size, _TRIES), seed=seed)
        ratio_u = random.uniform((batch_size, _TRIES), seed=seed)
        position_u = random.uniform((batch_size, _TRIES, 2), seed=seed)
        return {
            "crop_boxes": crop_boxes_from_uniforms(
                area_u, ratio_u, position_u, in_h, in_w, self.scale, self.ratio
            )
        }

    def transform_images(self, images, transformation=None, training=True):
        images = tf.cast(images, self.compute_dtype)
        shape = tf.shape(images)
        if not training or transformation is None:
            boxes = tf.tile([[0, 0, shape[1], shape[2]]], [shape[0], 1])
        else:
            boxes = tf.cast(transformation["crop_boxes"], tf.int32)
        top, left, h, w = tf.unstack(tf.cast(boxes, tf.float32), axis=1)
        denom_h = tf.cast(tf.maximum(shape[1] - 1, 1), tf.float32)
        denom_w = tf.cast(tf.maximum(shape[2] - 1, 1), tf.float32)
        normalized = tf.stack(
            [
                top / denom_h,
                left / denom_w,
                (top + h - 1.0) / denom_h,
                (left + w - 1.0) / denom_w,
            ],
            axis=1,
        )
        out = tf.image.crop_and_resize(
            tf.cast(images, tf.float32),
            normalized,
            tf.range(shape[0]),
            [self.height, self.width],
            method="bilinear",
        )
        return tf.cast(out, self.compute_dtype)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-3], self.height, self.width, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "height": self.height,
                "width": self.width,
                "scale": self.scale,
                "ratio": self.ratio,
                "seed": self.seed,
            }
        )
        return config


def crop_boxes_from_uniforms(area_u, ratio_u, position_u, in_h, in_w, scale, ratio):
    """torchvision's `RandomResizedCrop.get_params` for a batch of uniforms.

    Args:
        area_u, ratio_u: uniforms `[B, tries]`; position_u: `[B, tries, 2]`.
    Returns:
        int32 `[B, 4]` boxes `(top, left, height, width)`.
    """
    in_h_f = tf.cast(in_h, tf.float32)
    in_w_f = tf.cast(in_w, tf.float32)
    area = in_h_f * in_w_f
    target_area = area * (scale[0] + (scale[1] - scale[0]) * area_u)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(log_lo + (log_hi - log_lo) * ratio_u)
    w = tf.round(tf.sqrt(target_area * aspect))
    h = tf.round(tf.sqrt(target_area / aspect))
    ok = (w > 0) & (w <= in_w_f) & (h > 0) & (h <= in_h_f)
    top = tf.floor(position_u[..., 0] * (in_h_f - h + 1.0))
    left = tf.floor(position_u[..., 1] * (in_w_f - w + 1.0))
    first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
    found = tf.reduce_any(ok, axis=1)
    pick = lambda t: tf.gather(t, first, batch_dims=1)  # noqa: E731
    # Centre-crop fallback, clamped to the ratio range.
    in_ratio = in_w_f / in_h_f
    fb_w = tf.where(
        in_ratio < ratio[0],
        in_w_f,
        tf.where(in_ratio > ratio[1], tf.round(in_h_f * ratio[1]), in_w_f),
    )
    fb_h = tf.where(
        in_ratio < ratio[0],
        tf.round(in_w_f / ratio[0]),
        in_h_f,
    )
    fb_top = tf.floor((in_h_f - fb_h) / 2.0)
    fb_left = tf.floor((in_w_f - fb_w) / 2.0)
    boxes = tf.stack(
        [
            tf.where(found, pick(top), fb_top),
            tf.where(found, pick(left), fb_left),
            tf.where(found, pick(h), fb_h),
            tf.where(found, pick(w), fb_w),
        ],
        axis=1,
    )
    return tf.cast(boxes, tf.int32)
