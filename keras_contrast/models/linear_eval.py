"""Linear evaluation: a Dense classifier trained on a frozen encoder."""

import keras
import numpy as np
import tensorflow as tf
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
            # A model rebuilt from a config with `trainable=False` (e.g. when loading a
            # `.keras` file) keeps its variables flagged trainable, and the parent model
            # would collect them; flag them here so only the classifier trains.
            for variable in getattr(encoder, "variables", []):
                variable.trainable = False
        self.encoder = encoder
        self.num_classes = num_classes
        self.freeze_encoder = bool(freeze_encoder)
        self.classifier = keras.layers.Dense(
            num_classes, dtype=self.dtype_policy, name="linear_classifier"
        )

    def build(self, input_shape):
        if hasattr(self.encoder, "built") and not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.classifier.built:
            self.classifier.build(
                tuple(self.encoder.compute_output_shape(tuple(input_shape)))
            )
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


def _embed_dataset(encoder, data):
    """`(features, labels, image_shape)` of a batched `(images, labels)` dataset."""
    features, labels, image_shape = [], [], None
    for images, batch_labels in data:
        image_shape = tuple(images.shape[1:])
        features.append(np.asarray(tf.cast(encoder(images, training=False), tf.float32)))
        labels.append(np.asarray(batch_labels).reshape(-1))
    if not features:
        raise ValueError("The dataset given for linear evaluation is empty.")
    return np.concatenate(features), np.concatenate(labels), image_shape


def linear_evaluation(
    encoder,
    train_data,
    eval_data,
    num_classes,
    epochs=10,
    optimizer=None,
    verbose=0,
    cache_features=False,
    batch_size=256,
    seed=None,
):
    """Two-stage evaluation: trains a linear classifier on a frozen encoder, returns accuracy.

    Builds a `LinearClassifier` (which freezes `encoder`, BatchNorm in inference mode),
    trains it with softmax cross-entropy on `train_data` and reports top-1 accuracy on
    `eval_data`. Two protocols:

    - `cache_features=False` (the references' protocol when `train_data` is augmented, e.g.
      random crop + flip as SupContrast and MoCo train their linear classifiers): every
      epoch runs the frozen encoder on `train_data`.
    - `cache_features=True` (cheap): the encoder embeds `train_data` and `eval_data` once
      (inference mode), and the linear layer trains on the cached features, shuffled every
      epoch in batches of `batch_size`; hundreds of epochs cost seconds. Without
      augmentation the two give the same classifier for the same optimizer and order; with
      augmented `train_data` caching embeds one augmented copy only.

    Args:
        encoder: the pretrained encoder, e.g. `model.encoder`. It is frozen in place.
        train_data: a `tf.data.Dataset` (or anything `fit` accepts as `x`) of batched
            `(images, int_labels)`; with `cache_features=True` an iterable of batched
            `(images, labels)`.
        eval_data: the same for the split to report.
        num_classes: number of classes.
        epochs: training epochs of the classifier. Defaults to `10`.
        optimizer: a Keras optimizer. Defaults to `keras.optimizers.Adam(1e-3)`.
        verbose: passed to `fit`. Defaults to `0`.
        cache_features: embed once and train on cached features. Defaults to `False`.
        batch_size: batch size on cached features. Defaults to `256`.
        seed: shuffle seed on cached features. Defaults to `None`.

    Returns:
        A tuple `(accuracy, classifier)`: top-1 accuracy on `eval_data` as a Python float,
        and the trained `LinearClassifier` (images in, logits out, also with cached
        features).

    Example:

    ```python
    accuracy, classifier = linear_evaluation(
        model.encoder, train_ds, test_ds, num_classes=10, epochs=100, cache_features=True,
        optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.1, 100 * steps),
                                       momentum=0.9))
    ```

    References:
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
    """
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"`epochs` must be a positive int. Received: epochs={epochs!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(
            f"`batch_size` must be a positive int. Received: batch_size={batch_size!r}"
        )
    optimizer = optimizer if optimizer is not None else keras.optimizers.Adam(1e-3)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    classifier = LinearClassifier(encoder, num_classes)
    if not cache_features:
        classifier.compile(
            optimizer=optimizer,
            loss=loss,
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        # A tf.data input is shuffled by its pipeline (Keras warns when told to shuffle it).
        classifier.fit(
            train_data, epochs=epochs, verbose=verbose,
            shuffle=not isinstance(train_data, tf.data.Dataset),
        )
        result = classifier.evaluate(eval_data, verbose=verbose, return_dict=True)
        return float(result["accuracy"]), classifier
    train_features, train_labels, image_shape = _embed_dataset(encoder, train_data)
    eval_features, eval_labels, _ = _embed_dataset(encoder, eval_data)
    head = keras.Sequential(
        [keras.Input((train_features.shape[-1],)), classifier.classifier], name="linear_head"
    )
    head.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    cached = (
        tf.data.Dataset.from_tensor_slices((train_features, train_labels))
        .shuffle(len(train_labels), seed=seed, reshuffle_each_iteration=True)
        .batch(batch_size)
    )
    head.fit(cached, epochs=epochs, verbose=verbose, shuffle=False)
    classifier.build((None,) + image_shape)  # the trained Dense is the classifier's
    accuracy = head.evaluate(
        eval_features, eval_labels, batch_size=batch_size, verbose=verbose, return_dict=True
    )["accuracy"]
    return float(accuracy), classifier
