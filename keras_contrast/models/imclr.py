"""ImCLR inference: a classifier trained on paired images sees each image paired with itself."""

import keras
from keras import ops

_AXES = {"height": 1, "width": 2, "channels": 3}


def self_pair(images, axis="width"):
    """Concatenates each image with itself along `axis` (`[B, H, W, C]` images).

    Args:
        images: images `[batch, height, width, channels]`.
        axis: `"width"`, `"height"` or `"channels"`. Defaults to `"width"`.

    Returns:
        The paired images, twice as large along `axis`.
    """
    if axis not in _AXES:
        raise ValueError(
            f"`axis` must be one of {sorted(_AXES)}. Received: axis={axis!r}"
        )
    if len(images.shape) != 4:
        raise ValueError(
            "`images` must be [batch, height, width, channels]. "
            f"Received: images.shape={tuple(images.shape)}"
        )
    return ops.concatenate([images, images], axis=_AXES[axis])


@keras.saving.register_keras_serializable(package="keras_contrast")
class ImCLRClassifier(keras.Model):
    """Wraps a classifier trained with ImCLR pairing so that it self-pairs at inference.

    ImCLR trains an ordinary classifier on pairs of images concatenated along width, height
    or channels (`keras_contrast.layers.ImCLRPairing` in the input pipeline). At inference
    there is one image: this wrapper concatenates it with itself along the same `axis` and
    calls the classifier, so callers (and `keras_contrast.export`) pass single images.

    Args:
        classifier: the trained Keras classifier taking paired images.
        axis: the pairing axis used in training: `"width"`, `"height"` or `"channels"`.
            Defaults to `"width"`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model` mapping images `[batch, height, width, channels]` to the classifier's
        output on the self-paired images.

    Example:

    ```python
    # classifier was trained on ImCLRPairing(axis="width") batches of 32x64 images.
    model = ImCLRClassifier(classifier, axis="width")
    probabilities = model.predict(test_images)  # test_images: [N, 32, 32, 3]
    ```

    References:
        - [Chen et al., ImCLR: Implicit Contrastive Learning for Image Classification, 2020](
          https://arxiv.org/abs/2011.12618)
    """

    def __init__(self, classifier, axis="width", **kwargs):
        super().__init__(**kwargs)
        if not callable(classifier):
            raise ValueError(
                f"`classifier` must be a Keras model or layer. Received: classifier={classifier!r}"
            )
        if axis not in _AXES:
            raise ValueError(f"`axis` must be one of {sorted(_AXES)}. Received: axis={axis!r}")
        self.classifier = classifier
        self.axis = axis

    def pair(self, images):
        """The self-paired images the classifier sees."""
        return self_pair(images, self.axis)

    def build(self, input_shape):
        input_shape = list(input_shape)
        index = _AXES[self.axis]
        if input_shape[index] is not None:
            input_shape[index] *= 2
        if hasattr(self.classifier, "built") and not self.classifier.built:
            self.classifier.build(tuple(input_shape))
        self.built = True

    def call(self, inputs, training=False):
        return self.classifier(self.pair(inputs), training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "classifier": keras.saving.serialize_keras_object(self.classifier),
                "axis": self.axis,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["classifier"] = keras.saving.deserialize_keras_object(config["classifier"])
        return cls(**config)
