"""Linear evaluation: a Dense classifier trained on a frozen encoder."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_contrast")
class LinearClassifier(keras.Model):
    """A frozen encoder followed by a trainable `Dense` classifier (linear evaluation).

    The encoder is frozen (`encoder.trainable` is set to `False`) and always called with
    `training=False`, so its BatchNorm layers run in inference mode with their moving
    statistics and nothing in the encoder changes while the classifier trains. The model
    returns logits; train it with `SparseCategoricalCrossentropy(from_logits=True)`.

    With `freeze_encoder=False` it is an ordinary supervised classifier instead (encoder +
    linear layer, trained end to end, BatchNorm in training mode while fitting), e.g. for the
    cross-entropy and ImCLR recipes; it exports the same way (embeddings and
    probabilities).

    Args:
        encoder: a Keras model or layer mapping images to features `[batch, dim]`.
        num_classes: number of classes. Must be >= 2.
        freeze_encoder: freeze the encoder (linear evaluation). Defaults to `True`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model` mapping images to logits `[batch, num_classes]`; `embed(images)`
        returns the encoder features.

    Example:

    ```python
    classifier = LinearClassifier(pretrained.encoder, num_classes=10)
    classifier.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    classifier.fit(train_images, train_labels, epochs=10)
    ```

    References:
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
    """

    def __init__(self, encoder, num_classes, freeze_encoder=True, **kwargs):
        super().__init__(**kwargs)
        if not callable(encoder):
            raise ValueError(
                f"`encoder` must be a Keras model or layer. Received: encoder={encoder!r}"
            )
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        if freeze_encoder:
            encoder.trainable = False
        self.encoder = encoder
        self.num_classes = num_classes
        self.freeze_encoder = bool(freeze_encoder)
        self.classifier = keras.layers.Dense(
            num_classes, dtype=self.dtype_policy, name="linear_classifier"
        )

    def build(self, input_shape):
        if hasattr(self.encoder, "built") and not self.encoder.built:
            self.encoder.build(input_shape)
        self.classifier.build(tuple(self.encoder.compute_output_shape(tuple(input_shape))))
        self.built = True

    def embed(self, images):
        """Encoder features of `images` (inference mode)."""
        return self.encoder(images, training=False)

    def call(self, inputs, training=False):
        if self.freeze_encoder:
            features = ops.stop_gradient(self.encoder(inputs, training=False))
        else:
            features = self.encoder(inputs, training=training)
        return self.classifier(features)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_classes": self.num_classes,
                "freeze_encoder": self.freeze_encoder,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)


def linear_evaluation(
    encoder,
    train_data,
    eval_data,
    num_classes,
    epochs=10,
    optimizer=None,
    verbose=0,
):
    """Two-stage evaluation: trains a linear classifier on a frozen encoder, returns accuracy.

    Builds a `LinearClassifier` (which freezes `encoder`, BatchNorm in inference mode),
    trains it with softmax cross-entropy on `train_data` and reports top-1 accuracy on
    `eval_data`.

    Args:
        encoder: the pretrained encoder, e.g. `supcon_model.encoder`. It is frozen in place.
        train_data: a `tf.data.Dataset` (or anything `fit` accepts as `x`) of batched
            `(images, int_labels)`.
        eval_data: the same for the split to report.
        num_classes: number of classes.
        epochs: training epochs of the classifier. Defaults to `10`.
        optimizer: a Keras optimizer. Defaults to `keras.optimizers.Adam(1e-3)`.
        verbose: passed to `fit`. Defaults to `0`.

    Returns:
        A tuple `(accuracy, classifier)`: top-1 accuracy on `eval_data` as a Python float,
        and the trained `LinearClassifier`.

    Example:

    ```python
    accuracy, classifier = linear_evaluation(
        model.encoder, train_ds, test_ds, num_classes=10, epochs=20)
    ```

    References:
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int. Received: epochs={epochs!r}")
    classifier = LinearClassifier(encoder, num_classes)
    classifier.compile(
        optimizer=optimizer if optimizer is not None else keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    classifier.fit(train_data, epochs=epochs, verbose=verbose)
    result = classifier.evaluate(eval_data, verbose=verbose, return_dict=True)
    return float(result["accuracy"]), classifier
