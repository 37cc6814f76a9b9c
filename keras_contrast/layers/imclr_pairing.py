"""ImCLR input construction: each image joined with a partner from its batch."""

import keras
import tensorflow as tf
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_contrast.layers import _image_utils

_AXES = {"height": -3, "width": -2, "channels": -1}


@keras.saving.register_keras_serializable(package="keras_contrast")
class ImCLRPairing(BaseImagePreprocessingLayer):
    """Joins each image with a partner image; labels become the pair's mean.

    Training (`training=True`): image `i` is concatenated with image
    `partner[i]` along `axis`, where `partner` is a random permutation of
    the batch, and its label becomes `(onehot(y_i) + onehot(y_partner)) / 2`.
    With `same_class_probability=p`, each image independently (with
    probability `p`) takes instead a random *other* image of its own class
    when the batch holds one (then the pairing is no longer a permutation).

    Inference (`training=False`): each image is joined with itself and labels
    pass unchanged, so a trained classifier sees the same input shape; put the
    layer in the exported serving model so clients send plain `[H, W, C]`.

    The ImCLR paper does not publish its join axis nor its partner policy; we
    chose the width axis (a side-by-side `[H, 2W, C]` image) and a uniformly
    random in-batch partner (a permutation), with the optional same-class
    share as a knob.

    Input: a dict `{"images": [B, H, W, C], "labels": ...}` with int labels
    `[B]` (then `num_classes` is required) or one-hot / soft labels `[B, K]`,
    or a bare image tensor. Works eagerly, in `tf.data` and in a model
    (XLA-compatible).

    Args:
        axis: `"width"` (`[H, 2W, C]`), `"height"` (`[2H, W, C]`) or
            `"channels"` (`[H, W, 2C]`). Defaults to `"width"`.
        num_classes: number of classes for int labels. Defaults to `None`.
        same_class_probability: `None` (random partner) or a share in
            `[0, 1]`. Defaults to `None`.
        seed: integer seed. Defaults to `None`.
        **kwargs: base layer keyword arguments.

    Returns:
        The paired images (and labels). A transformation is
        `{"partners": int32 [B]}`.

    Example:

    ```python
    import numpy as np
    pair = ImCLRPairing(num_classes=10, seed=0)
    out = pair({"images": np.zeros((4, 8, 8, 3), "float32"),
                "labels": np.array([0, 1, 2, 3])})
    out["images"].shape, out["labels"].shape  # (4, 8, 16, 3), (4, 10)
    ```

    References:
        - [ImCLR, Hu et al. 2020](https://arxiv.org/abs/2011.12618)
    """

    _USE_BASE_FACTOR = False

    def __init__(
        self, axis="width", num_classes=None, same_class_probability=None, seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if axis not in _AXES:
            raise ValueError(
                f"`axis` must be one of {sorted(_AXES)}. Received: axis={axis}"
            )
        if num_classes is not None and (
            not isinstance(num_classes, int) or num_classes < 1
        ):
            raise ValueError(
                "`num_classes` must be a positive integer or None. "
                f"Received: num_classes={num_classes}"
            )
        if same_class_probability is not None:
            _image_utils.validate_probability(
                same_class_probability, "same_class_probability"
            )
        self.axis = axis
        self.num_classes = num_classes
        self.same_class_probability = same_class_probability
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _one_hot(self, labels):
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 1:
            if self.num_classes is None:
                raise ValueError(
                    "Integer labels `[B]` need `num_classes`. Received: "
                    f"num_classes=None, labels.shape={labels.shape}"
                )
            labels = tf.cast(labels, tf.int32)
            # Out-of-range ids would silently become all-zero one-hot rows.
            check = tf.debugging.assert_equal(
                tf.reduce_all((labels >= 0) & (labels < self.num_classes)),
                True,
                message=f"ImCLRPairing: `labels` must be class ids in [0, {self.num_classes}) "
                f"(num_classes={self.num_classes}); received ids outside that range",
            )
            with tf.control_dependencies([check]):
                return tf.one_hot(labels, self.num_classes)
        if labels.shape.rank == 2:
            return tf.cast(labels, self.compute_dtype)
        raise ValueError(
            "`labels` must be int `[B]` or one-hot/soft `[B, K]`. "
            f"Received: labels.shape={labels.shape}"
        )

    def get_random_transformation(self, data, training=True, seed=None):
        images = data["images"] if isinstance(data, dict) else data
        images = tf.convert_to_tensor(images)
        _image_utils.check_image_rank(images)
        batch_size = 1 if images.shape.rank == 3 else tf.shape(images)[0]
        identity = tf.range(batch_size)
        if not training:
            return {"partners": identity}
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        partners = tf.cast(self.backend.random.shuffle(identity, seed=seed), tf.int32)
        p = self.same_class_probability
        if p is not None and isinstance(data, dict) and "labels" in data:
            labels = data["labels"]
            if images.shape.rank == 3:
                labels = tf.expand_dims(labels, 0)
            classes = tf.argmax(self._one_hot(labels), axis=-1, output_type=tf.int32)
            same = tf.equal(classes[:, None], classes[None, :])
            same &= ~tf.eye(batch_size, dtype=tf.bool)
            scores = self.backend.random.uniform(
                (batch_size, batch_size), seed=seed
            )
            scores = tf.where(same, scores + 1.0, 0.0)
            same_partner = tf.argmax(scores, axis=1, output_type=tf.int32)
            has_same = tf.reduce_any(same, axis=1)
            want_same = self.backend.random.uniform((batch_size,), seed=seed) < p
            partners = tf.where(want_same & has_same, same_partner, partners)
        return {"partners": partners}

    def transform_images(self, images, transformation=None, training=True):
        images = tf.cast(images, self.compute_dtype)
        partners = tf.gather(images, transformation["partners"])
        return tf.concat([images, partners], axis=_AXES[self.axis])

    def transform_labels(self, labels, transformation=None, training=True):
        if not training:
            return labels
        one_hot = self._one_hot(labels)
        return 0.5 * (one_hot + tf.gather(one_hot, transformation["partners"]))

    def compute_output_shape(self, input_shape):
        shape = list(input_shape)
        axis = _AXES[self.axis]
        shape[axis] = None if shape[axis] is None else 2 * shape[axis]
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "axis": self.axis,
                "num_classes": self.num_classes,
                "same_class_probability": self.same_class_probability,
                "seed": self.seed,
            }
        )
        return config
