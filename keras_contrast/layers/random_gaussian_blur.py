"""Gaussian blur with a random sigma per image, applied with a probability."""

import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils


@keras.saving.register_keras_serializable(package="keras_contrast")
class PerImageGaussianBlur(BaseImagePreprocessingLayer):
    """SimCLR / MoCo-v2 blur: per image, with probability `rate`, a Gaussian
    blur with `sigma ~ U(sigma_range)`.

    `keras.layers.RandomGaussianBlur` draws one sigma per batch; this layer
    draws one per image and blurs the whole batch at once with a separable
    depthwise convolution (images folded into channels), reflect padding.

    Args:
        sigma_range: `(min, max)` sigma in pixels. Defaults to `(0.1, 2.0)`.
        rate: probability of blurring an image. Defaults to `0.5`.
        kernel_size: odd kernel size. Defaults to `None`:
            `2 * ceil(3 * max_sigma) + 1`; clamped so that the radius stays
            below the image side (reflect padding).
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments.

    Returns:
        Images of the same shape in the compute dtype. A transformation is
        `{"sigmas": [B], "apply": bool [B]}`.
    """

    _USE_BASE_FACTOR = False

    def __init__(
        self, sigma_range=(0.1, 2.0), rate=0.5, kernel_size=None, seed=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.sigma_range = _image_utils.validate_range(sigma_range, "sigma_range")
        if self.sigma_range[0] <= 0:
            raise ValueError(
                f"`sigma_range` must be positive. Received: sigma_range={sigma_range}"
            )
        self.rate = _image_utils.validate_probability(rate, "rate")
        if kernel_size is not None and (
            not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0
        ):
            raise ValueError(
                "`kernel_size` must be a positive odd integer. "
                f"Received: kernel_size={kernel_size}"
            )
        self.kernel_size = kernel_size
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _size(self):
        if self.kernel_size is not None:
            return self.kernel_size
        return 2 * int(-(-3 * self.sigma_range[1] // 1)) + 1

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        images, batch_size = _image_utils.images_and_batch_size(self, data)
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        lo, hi = self.sigma_range
        sigmas = self.backend.random.uniform((batch_size,), lo, hi, seed=seed)
        apply = self.backend.random.uniform((batch_size,), seed=seed) < self.rate
        return {"sigmas": sigmas, "apply": apply}

    def transform_images(self, images, transformation=None, training=True):
        images = tf.cast(images, self.compute_dtype)
        if not training or transformation is None:
            return images
        x = tf.cast(images, tf.float32)
        sigmas = tf.cast(transformation["sigmas"], tf.float32)
        apply = tf.reshape(transformation["apply"], [-1, 1, 1, 1])
        out = _image_utils.unless_empty(lambda x: self._blur(x, sigmas), x)
        return tf.cast(tf.where(apply, out, x), self.compute_dtype)

    def _blur(self, x, sigmas):
        radius = self._size() // 2
        # Reflect padding needs radius < side: clamp for tiny images (when the sides
        # are known only at run time, with a kernel whose length is set then).
        sides = x.shape[-3:-1]
        if None not in sides:
            radius = max(0, min(radius, min(sides) - 1))
        else:
            shape = tf.shape(x)
            radius = tf.maximum(0, tf.minimum(radius, tf.minimum(shape[1], shape[2]) - 1))
        offsets = tf.cast(tf.range(-radius, radius + 1), tf.float32)
        kernels = tf.exp(-0.5 * (offsets[None, :] / sigmas[:, None]) ** 2)
        kernels /= tf.reduce_sum(kernels, axis=1, keepdims=True)  # [B, k]
        shape = tf.shape(x)
        b, h, w, c = shape[0], shape[1], shape[2], shape[3]
        # Fold the batch into channels: one depthwise conv with per-image kernels.
        folded = tf.reshape(tf.transpose(x, [1, 2, 0, 3]), [1, h, w, b * c])
        per_channel = tf.repeat(kernels, c, axis=0)  # [B*C, k]
        pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
        folded = tf.pad(folded, pad, mode="REFLECT")  # radius 0: no padding
        k_rows = tf.transpose(per_channel)[:, None, :, None]
        k_cols = tf.transpose(per_channel)[None, :, :, None]
        out = tf.nn.depthwise_conv2d(folded, k_rows, [1, 1, 1, 1], "VALID")
        out = tf.nn.depthwise_conv2d(out, k_cols, [1, 1, 1, 1], "VALID")
        out = tf.transpose(tf.reshape(out, [h, w, b, c]), [2, 0, 1, 3])
        out.set_shape(x.shape)
        return out

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sigma_range": self.sigma_range,
                "rate": self.rate,
                "kernel_size": self.kernel_size,
                "seed": self.seed,
            }
        )
        return config
