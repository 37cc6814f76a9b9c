"""Applies a wrapped image layer to a random subset of the images."""

import keras
import tensorflow as tf

from keras_contrast.layers import _image_utils


@keras.saving.register_keras_serializable(package="keras_contrast")
class RandomApply(keras.layers.Layer):
    """Applies `layer` to each image with probability `rate` (torchvision's
    `RandomApply`), e.g. color jitter with p=0.8.

    The wrapped layer runs on the whole batch and each image keeps its
    augmented or original version, so `layer` must keep the shape.

    Args:
        layer: a Keras image layer (shape preserving).
        rate: probability of applying it, per image. Defaults to `0.5`.
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments.

    Example:

    ```python
    jitter = RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), rate=0.8, seed=0)
    ```
    """

    def __init__(self, layer, rate=0.5, seed=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                f"`layer` must be a Keras layer. Received: layer={layer}"
            )
        self.layer = layer
        self.rate = _image_utils.validate_probability(rate, "rate")
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        images = tf.convert_to_tensor(images)
        rank = _image_utils.check_image_rank(images)
        dtype = self.compute_dtype
        if not training:
            return tf.cast(images, dtype)
        batched = images if rank == 4 else images[None]
        size = tf.shape(batched)[0]
        keep = keras.random.uniform((size,), seed=self.generator) < self.rate
        out = tf.where(
            keep[:, None, None, None],
            tf.cast(self.layer(batched, training=training), dtype),
            tf.cast(batched, dtype),
        )
        return out if rank == 4 else out[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "layer": keras.saving.serialize_keras_object(self.layer),
                "rate": self.rate,
                "seed": self.seed,
            }
        )
        return config
