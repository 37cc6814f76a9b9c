"""Semi-supervised Π-model (Laine & Aila, 2017) as a `keras.Model`, with optional ImCLR pairing."""

import keras
import tensorflow as tf

from keras_contrast.layers.imclr_pairing import ImCLRPairing
from keras_contrast.models.imclr import self_pair
from keras_contrast.models.trainer import check_int
from keras_contrast.models.trainer import check_number
from keras_contrast.models.trainer import compile_as_saved
from keras_contrast.models.trainer import scale_loss_for_distribution


def rampup_weight(epoch, rampup_epochs):
    """The Π-model's ramp-up `exp(-5 (1 - T)^2)`, `T = min(epoch / rampup_epochs, 1)`.

    Laine & Aila's Gaussian ramp-up (the "Realistic evaluation" setup uses the same curve over
    steps): about 0.0067 at the first epoch, 1 from `rampup_epochs` on (1 at once with 0).
    """
    if rampup_epochs == 0:
        return tf.constant(1.0)
    progress = tf.minimum(tf.cast(epoch, tf.float32) / float(rampup_epochs), 1.0)
    return tf.exp(-5.0 * tf.square(1.0 - progress))


def pi_model_augmentation(translation=0.0625, noise_stddev=0.15, seed=None):
    """The "Realistic evaluation" augmentation of CIFAR-10 for the Π-model, on 0-255 images.

    A horizontal flip, a random translation by up to `translation` of the side (2 px at
    32 px; reflected borders) and additive Gaussian noise of `noise_stddev` on the images
    scaled to [-1, 1] (their scale; 0.15 there is 19.1 on 0-255). The noise is only added in
    training mode. All Keras layers.

    Args:
        translation: largest shift as a fraction of the height and width. Defaults to
            `0.0625`.
        noise_stddev: standard deviation of the noise on the [-1, 1] scale, in [0, 1] (0:
            none). Defaults to `0.15`.
        seed: `None` or an int. Defaults to `None`.

    Returns:
        A `keras.Sequential` of Keras layers (0-255 in, 0-255 out).
    """
    layers = [
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomTranslation(
            translation, translation, fill_mode="reflect",
            seed=None if seed is None else seed + 1,
        ),
    ]
    if noise_stddev:
        layers += [
            keras.layers.Rescaling(1 / 127.5, offset=-1.0),
            keras.layers.GaussianNoise(noise_stddev, seed=None if seed is None else seed + 2),
            keras.layers.Rescaling(127.5, offset=127.5),
        ]
    return keras.Sequential(layers, name="pi_model_augmentation")


class _EpochTracker(keras.callbacks.Callback):
    """Keeps `PiModel.epoch` at the epoch `fit` is in (also after `BackupAndRestore`)."""

    def __init__(self, model):
        super().__init__()
        self._pi_model = model

    def on_epoch_begin(self, epoch, logs=None):
        self._pi_model.epoch.assign(epoch)


@keras.saving.register_keras_serializable(package="keras_contrast")
class PiModel(keras.Model):
    """The Π-model: cross-entropy on labelled images plus consistency between two passes.

    Every training image (labelled or not) goes through `augment` twice, with independent
    draws (and the classifier's own dropout or noise), giving logits `z1`, `z2`:

    ```
    loss = mean over labelled i of CE(y_i, z1_i)
           + w(epoch) * mean over all images i of mean over classes (softmax(z1_i) - sg(softmax(z2_i)))^2
    w(epoch) = consistency_weight * exp(-5 (1 - min(epoch / rampup_epochs, 1))^2)
    ```

    (`sg` = stop-gradient on the second pass, as the "Realistic evaluation of deep
    semi-supervised learning" reference and TorchSSL do; its weight 20 is the default.) The
    unlabelled part gets no cross-entropy.

    ImCLR inside the Π-model (`pairing=ImCLRPairing(...)`): the batch is paired once per step
    before the two augmentations (labelled images with labelled partners, labels averaged;
    unlabelled images with unlabelled partners), so the consistency compares two views of the
    same pairs. At inference each image is paired with itself, as `ImCLRClassifier` does.

    Batches: `({"labelled": images [L, H, W, C], "unlabelled": images [U, H, W, C]}, labels)`
    with int labels `[L]` or one-hot / soft labels `[L, classes]`. `evaluate` and `predict`
    take plain images (and labels). Calling the model returns the classifier's logits.

    Args:
        classifier: a built Keras model mapping images (paired images with `pairing`) to
            logits `[B, classes]`.
        consistency_weight: the largest weight `w` of the consistency term, >= 0. Defaults
            to `20.0`.
        rampup_epochs: epochs of the ramp-up, >= 0 (0: full weight from the start).
            Defaults to `80` (Laine & Aila).
        augment: the stochastic augmentation applied twice per step (a layer or model called
            with `training=True`). Defaults to `pi_model_augmentation()`.
        pairing: `None`, or an `ImCLRPairing`. Defaults to `None`.
        num_classes: classes of the int labels; default: the classifier's `num_classes`
            attribute or output size. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    model = PiModel(classifier, consistency_weight=20.0, rampup_epochs=80)
    model.compile(optimizer=keras.optimizers.Adam(3e-4))
    model.fit(train, epochs=100)   # ({"labelled": x_l, "unlabelled": x_u}, y_l) batches
    model.evaluate(validation)     # (images, labels)
    ```

    References:
        - [Laine & Aila, Temporal Ensembling for Semi-Supervised Learning, 2017](
          https://arxiv.org/abs/1610.02242)
        - [Oliver et al., Realistic Evaluation of Deep Semi-Supervised Learning Algorithms,
          2018](https://arxiv.org/abs/1804.09170)
    """

    def __init__(self, classifier, consistency_weight=20.0, rampup_epochs=80, augment=None,
                 pairing=None, num_classes=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(classifier, (keras.Model, keras.layers.Layer)) or not getattr(
            classifier, "built", False
        ):
            raise ValueError(
                "`classifier` must be a built Keras model (e.g. made with a `keras.Input`, "
                f"or called once). Received: classifier={classifier!r}"
            )
        check_number("consistency_weight", consistency_weight, minimum=0.0, inclusive=True)
        check_int("rampup_epochs", rampup_epochs, minimum=0)
        if pairing is not None and not isinstance(pairing, ImCLRPairing):
            raise ValueError(
                f"`pairing` must be None or an ImCLRPairing. Received: pairing={pairing!r}"
            )
        if num_classes is None:
            num_classes = getattr(classifier, "num_classes", None)
        if num_classes is None:
            try:
                num_classes = classifier.output_shape[-1]
            except (AttributeError, ValueError):
                num_classes = None
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                "`num_classes` must be an int >= 2 (given, or the classifier's `num_classes` "
                f"or output size). Received: num_classes={num_classes!r}"
            )
        self.num_classes = num_classes
        self.classifier = classifier
        self.consistency_weight = float(consistency_weight)
        self.rampup_epochs = rampup_epochs
        self.augment = augment if augment is not None else pi_model_augmentation()
        self.pairing = pairing
        self.epoch = self.add_weight(
            name="epoch", shape=(), initializer="zeros", dtype="int64", trainable=False
        )
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("loss", "ce_loss", "consistency_loss", "consistency_weight")
        }
        self._trackers["accuracy"] = keras.metrics.CategoricalAccuracy(name="accuracy")
        self.built = True

    @property
    def metrics(self):
        return list(self._trackers.values())

    def self_paired(self, images):
        """The images as the classifier sees them at inference (self-paired with ImCLR)."""
        return images if self.pairing is None else self_pair(images, self.pairing.axis)

    def compile(self, optimizer="rmsprop", **kwargs):
        """`keras.Model.compile`; the optimizer is built on the classifier's variables.

        Built here so that its state loads back (`.keras` files, `BackupAndRestore`). A `loss`
        is refused: the model owns its losses.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "PiModel computes its own losses (cross-entropy and consistency). Received: "
                f"loss={kwargs['loss']!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)
        self.optimizer.build(self.classifier.trainable_variables)

    def compile_from_config(self, config):
        compile_as_saved(self, config)

    def call(self, images, training=False):
        return self.classifier(self.self_paired(images), training=training)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`, with the callback that tells the ramp-up the epoch."""
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), _EpochTracker(self)]
        return super().fit(*args, **kwargs)

    def _one_hot(self, labels):
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank == 1:
            return tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return tf.cast(labels, tf.float32)

    def _parse(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(x, dict) or set(x) - {"labelled", "unlabelled", "labels"} or (
            "labelled" not in x or "unlabelled" not in x
        ):
            keys = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(
                "PiModel trains on batches ({'labelled': images [L, H, W, C], 'unlabelled': "
                f"images [U, H, W, C]}}, labels [L]). Received: {keys}"
            )
        labels = x.get("labels", y)
        if labels is None:
            raise ValueError("PiModel needs the labels of the labelled images. Received none.")
        return x["labelled"], labels, x["unlabelled"]

    def _pair(self, labelled, labels, unlabelled):
        if self.pairing is None:
            return labelled, self._one_hot(labels), unlabelled
        one_hot = self._one_hot(labels)
        paired = self.pairing({"images": labelled, "labels": one_hot}, training=True)
        return paired["images"], paired["labels"], self.pairing(unlabelled, training=True)

    def compute_terms(self, labelled, labels, unlabelled, training=True):
        """`(terms, logits of the first pass on the labelled images)` of one batch."""
        labelled, targets, unlabelled = self._pair(labelled, labels, unlabelled)
        images = tf.concat([tf.cast(labelled, tf.float32), tf.cast(unlabelled, tf.float32)], 0)
        count = tf.shape(labelled)[0]
        logits_1 = tf.cast(self.classifier(self.augment(images, training=True),
                                           training=training), tf.float32)
        logits_2 = tf.cast(self.classifier(self.augment(images, training=True),
                                           training=training), tf.float32)
        ce = tf.reduce_mean(
            keras.losses.categorical_crossentropy(targets, logits_1[:count], from_logits=True)
        )
        difference = tf.nn.softmax(logits_1) - tf.stop_gradient(tf.nn.softmax(logits_2))
        consistency = tf.reduce_mean(tf.square(difference))
        weight = self.consistency_weight * rampup_weight(self.epoch, self.rampup_epochs)
        terms = {"loss": ce + weight * consistency, "ce_loss": ce,
                 "consistency_loss": consistency, "consistency_weight": weight}
        return terms, logits_1[:count], targets

    def train_step(self, data):
        labelled, labels, unlabelled = self._parse(data)
        variables = self.classifier.trainable_variables
        with tf.GradientTape() as tape:
            terms, logits, targets = self.compute_terms(labelled, labels, unlabelled)
            loss = terms["loss"] + tf.add_n([tf.constant(0.0)] + [
                tf.cast(l, tf.float32) for l in self.classifier.losses])
            scaled = self.optimizer.scale_loss(scale_loss_for_distribution(loss))
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        terms["loss"] = loss
        return self._update(terms, logits, targets)

    def _update(self, terms, logits, targets):
        for name, value in terms.items():
            self._trackers[name].update_state(value)
        self._trackers["accuracy"].update_state(targets, logits)
        return {name: tracker.result() for name, tracker in self._trackers.items()}

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict):
            labelled, labels, unlabelled = self._parse(data)
            terms, logits, targets = self.compute_terms(labelled, labels, unlabelled,
                                                        training=False)
            return self._update(terms, logits, targets)
        if y is None:
            raise ValueError("PiModel.evaluate on images needs their labels. Received none.")
        logits = tf.cast(self(x, training=False), tf.float32)
        targets = self._one_hot(y)
        ce = tf.reduce_mean(
            keras.losses.categorical_crossentropy(targets, logits, from_logits=True))
        self._trackers["ce_loss"].update_state(ce)
        self._trackers["accuracy"].update_state(targets, logits)
        return {name: self._trackers[name].result() for name in ("ce_loss", "accuracy")}

    def get_config(self):
        config = super().get_config()
        config.update({
            "classifier": keras.saving.serialize_keras_object(self.classifier),
            "consistency_weight": self.consistency_weight,
            "rampup_epochs": self.rampup_epochs,
            "augment": keras.saving.serialize_keras_object(self.augment),
            "pairing": keras.saving.serialize_keras_object(self.pairing),
            "num_classes": self.num_classes,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("classifier", "augment", "pairing"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
