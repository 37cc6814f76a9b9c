"""MixCo semi-positive construction: mix the first half of a batch with the second."""

import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils


@keras.saving.register_keras_serializable(package="keras_contrast")
class MixCoMixing(BaseImagePreprocessingLayer):
    """Mixes image `i` with image `i + B/2` to build MixCo's mixed queries.

    For a batch `x` of even size `B`, returns
    `mixed_i = lam_i * x_i + (1 - lam_i) * x_{i + B/2}` for `i < B/2`, as the
    MixCo reference does, with `lam_i ~ Beta(alpha, alpha)` (`alpha=1`: the
    reference's uniform weights). Pair the output with
    `keras_contrast.losses.mixco_targets(mix_weights, num_keys)` for the soft
    targets. At inference (`training=False`) `lam = 0.5` for every pair, so
    the output is deterministic.

    Beta sampling uses `StatelessRandomGammaV3`, which does not compile with
    XLA on GPU: use this layer in `tf.data` or a non-jitted model.

    Args:
        alpha: Beta concentration, > 0. Defaults to `1.0`.
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments.

    Returns:
        `{"images": [B/2, ...], "mix_weights": [B/2]}`. A transformation is
        `{"mix_weights": [B/2]}`.

    Example:

    ```python
    import numpy as np
    out = MixCoMixing(seed=0)(np.random.rand(8, 32, 32, 3).astype("float32"))
    out["images"].shape, out["mix_weights"].shape  # (4, 32, 32, 3), (4,)
    ```

    References:
        - [MixCo, Kim et al. 2020](https://arxiv.org/abs/2010.06300)
    """

    _USE_BASE_FACTOR = False

    def __init__(self, alpha=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not _image_utils.is_finite_number(alpha) or alpha <= 0:
            raise ValueError(f"`alpha` must be a finite number > 0. Received: alpha={alpha}")
        self.alpha = alpha
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_jit = False

    def _check(self, images):
        if images.shape.rank != 4:
            raise ValueError(
                "`images` must be a batch of images `[B, H, W, C]` with B even. "
                f"Received: images.shape={images.shape}"
            )
        batch = images.shape[0]
        if batch is not None and batch % 2:
            raise ValueError(
                "`images` must have an even batch size (first half is mixed "
                f"with second half). Received: batch size {batch}, "
                f"images.shape={images.shape}"
            )

    def get_random_transformation(self, data, training=True, seed=None):
        images = data["images"] if isinstance(data, dict) else data
        images = tf.convert_to_tensor(images)
        self._check(images)
        half = tf.shape(images)[0] // 2
        if not training:
            return {"mix_weights": tf.fill([half], 0.5)}
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        lam = self.backend.random.beta((half,), self.alpha, self.alpha, seed=seed)
        return {"mix_weights": tf.cast(lam, tf.float32)}

    def transform_images(self, images, transformation=None, training=True):
        images = tf.convert_to_tensor(images)
        self._check(images)
        tf.debugging.assert_equal(
            tf.shape(images)[0] % 2, 0, message="`images` batch size must be even"
        )
        half = tf.shape(images)[0] // 2
        x = tf.cast(images, self.compute_dtype)
        lam = tf.cast(transformation["mix_weights"], self.compute_dtype)
        lam = tf.reshape(lam, [-1] + [1] * (images.shape.rank - 1))
        return lam * x[:half] + (1.0 - lam) * x[half:]

    def call(self, data, training=True):
        images = data["images"] if isinstance(data, dict) else data
        transformation = self.get_random_transformation(images, training=training)
        return {
            "images": self.transform_images(images, transformation, training),
            "mix_weights": transformation["mix_weights"],
        }

    def compute_output_spec(self, data, training=True):
        images = data["images"] if isinstance(data, dict) else data
        half = None if images.shape[0] is None else images.shape[0] // 2
        return {
            "images": keras.KerasTensor((half, *images.shape[1:]), self.compute_dtype),
            "mix_weights": keras.KerasTensor((half,), "float32"),
        }

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "seed": self.seed})
        return config
