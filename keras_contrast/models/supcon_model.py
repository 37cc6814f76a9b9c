"""`SupConModel`: contrastive pretraining (SupCon or SimCLR) with plain `model.fit`."""

import keras
import tensorflow as tf
from keras import ops

from keras_contrast.losses.supcon import SupConLoss
from keras_contrast.models.heads import ProjectionHead


def _merge_views(views):
    """[batch, views, H, W, C] -> [batch * views, H, W, C]; H and W may be unknown."""
    shape = tf.shape(views)
    flat = tf.reshape(views, tf.concat([[-1], shape[2:]], axis=0))
    flat.set_shape([None] + list(views.shape[2:]))
    return flat


def _num_replicas():
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_distribution(loss):
    """Divides a per-replica loss by the number of replicas in sync, as Keras does.

    The optimizer sums gradients over replicas, so a replica must contribute its mean loss
    over its local examples divided by the number of replicas (Keras' own
    `keras.losses.Loss` reductions and `Trainer.compute_loss` do the same).
    """
    replicas = _num_replicas()
    if replicas > 1:
        loss = loss * ops.cast(1.0 / replicas, loss.dtype)
    return loss


def unscale_loss_for_distribution(loss):
    """Inverse of `scale_loss_for_distribution`, for reporting the loss in metrics."""
    replicas = _num_replicas()
    if replicas > 1:
        loss = loss * ops.cast(replicas, loss.dtype)
    return loss


@keras.saving.register_keras_serializable(package="keras_contrast")
class SupConModel(keras.Model):
    """Contrastive pretraining model: encoder + projection head, trained with `model.fit`.

    `fit` takes batches `(views, labels)` or just `views`: `views` is `[batch, num_views,
    height, width, channels]` (e.g. from a two-view augmentation pipeline), `labels` int
    `[batch]` or one-hot `[batch, classes]`; without labels the SupCon loss is SimCLR's
    NT-Xent. All views go through the encoder in one pass (`[batch * num_views, ...]`, so
    BatchNorm sees every view), the head maps the features to the unit sphere and the loss
    sees projections `[batch, num_views, dim]`.

    Under a `tf.distribute` strategy the loss gathers the projections of every replica, so
    negatives come from the global batch, and each replica's loss is divided by the number of
    replicas exactly as Keras scales its own losses: the summed gradients equal those of one
    device on the global batch. Mixed precision (`mixed_float16` with the loss scaling that
    `compile` adds, `mixed_bfloat16`) and `compile(jit_compile=True)` work.

    With `num_classes`, a linear classifier is trained jointly on stop-gradient encoder
    features with softmax cross-entropy (google-research supcon's default), so accuracy is
    visible during pretraining without changing the encoder's gradients; batches without
    labels skip it. Calling the model on images `[batch, height, width, channels]` returns a
    dict with `"embeddings"` (encoder features), `"projections"` and, with a classifier,
    `"probabilities"` (views `[batch, num_views, ...]` give `batch * num_views` rows,
    sample-major).

    Args:
        encoder: a Keras model or layer mapping images to features `[batch, dim]`, e.g.
            `keras_contrast.models.ResNet`.
        head: the projection head. Defaults to `ProjectionHead()` (MLP, 128-d).
        loss: the contrastive loss, called as `loss(y_true=labels_or_None,
            y_pred=projections)`; it must return the per-replica mean divided by the number
            of replicas (any Keras loss with the default reduction does). Give it here, not
            to `compile` (which takes only the optimizer and options such as `jit_compile`).
            It is kept as `self.contrastive_loss` because `compile` owns `self.loss`.
            Defaults to `SupConLoss()`.
        num_classes: number of classes of the joint linear classifier; `None` for no
            classifier. Defaults to `None`.
        classifier_loss_weight: weight of the classifier's cross-entropy in the total loss
            (it only reaches the classifier's weights). Defaults to `1.0`.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model`; `fit` reports `loss`, `contrastive_loss` and, with a classifier,
        `classifier_loss` and `classifier_accuracy`.

    Example:

    ```python
    model = SupConModel(
        encoder=ResNet(depth=18, width=64, image_shape=(32, 32, 3)),
        head=ProjectionHead(output_dim=128),
        loss=SupConLoss(temperature=0.1),
        num_classes=10,
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(two_view_dataset, epochs=1)  # yields (views [B, 2, 32, 32, 3], labels [B])
    ```

    References:
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
        - [Chen et al., A Simple Framework for Contrastive Learning, 2020](
          https://arxiv.org/abs/2002.05709)
    """

    def __init__(
        self,
        encoder,
        head=None,
        loss=None,
        num_classes=None,
        classifier_loss_weight=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not callable(encoder):
            raise ValueError(
                f"`encoder` must be a Keras model or layer. Received: encoder={encoder!r}"
            )
        if head is not None and not callable(head):
            raise ValueError(f"`head` must be a Keras layer or None. Received: head={head!r}")
        if loss is not None and not callable(loss):
            raise ValueError(f"`loss` must be a Keras loss or None. Received: loss={loss!r}")
        if num_classes is not None and (
            not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2
        ):
            raise ValueError(
                f"`num_classes` must be an int >= 2 or None. Received: num_classes={num_classes!r}"
            )
        if classifier_loss_weight < 0:
            raise ValueError(
                "`classifier_loss_weight` must be >= 0. "
                f"Received: classifier_loss_weight={classifier_loss_weight!r}"
            )
        self.encoder = encoder
        self.head = head if head is not None else ProjectionHead()
        self.contrastive_loss = loss if loss is not None else SupConLoss()
        self.num_classes = num_classes
        self.classifier_loss_weight = classifier_loss_weight
        self.classifier = None
        if num_classes is not None:
            self.classifier = keras.layers.Dense(
                num_classes, dtype=self.dtype_policy, name="linear_classifier"
            )
        self._classifier_loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.total_loss_tracker = keras.metrics.Mean(name="loss")
        self.contrastive_loss_tracker = keras.metrics.Mean(name="contrastive_loss")
        self.classifier_loss_tracker = keras.metrics.Mean(name="classifier_loss")
        self.classifier_accuracy = keras.metrics.SparseCategoricalAccuracy(
            name="classifier_accuracy"
        )

    @property
    def metrics(self):
        metrics = [self.total_loss_tracker, self.contrastive_loss_tracker]
        if self.classifier is not None:
            metrics += [self.classifier_loss_tracker, self.classifier_accuracy]
        return metrics

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) == 5:  # views
            input_shape = (None,) + input_shape[2:]
        if hasattr(self.encoder, "built") and not self.encoder.built:
            self.encoder.build(input_shape)
        feature_shape = tuple(self.encoder.compute_output_shape(input_shape))
        if not self.head.built:
            self.head.build(feature_shape)
        if self.classifier is not None and not self.classifier.built:
            self.classifier.build(feature_shape)
        self.built = True

    def call(self, inputs, training=False):
        if len(inputs.shape) == 5:
            # Views [batch, num_views, ...] are encoded as [batch * num_views, ...].
            inputs = _merge_views(inputs)
        features = self.encoder(inputs, training=training)
        outputs = {
            "embeddings": features,
            "projections": self.head(features, training=training),
        }
        if self.classifier is not None:
            logits = self.classifier(features, training=training)
            outputs["probabilities"] = ops.softmax(ops.cast(logits, "float32"), axis=-1)
        return outputs

    def _unpack(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(
                "SupConModel batches are (views, labels) or views; sample weights are not "
                "supported. Received a third element in the batch."
            )
        if x.shape.rank != 5:
            raise ValueError(
                "SupConModel expects views of shape [batch, num_views, height, width, "
                f"channels]. Received: views.shape={tuple(x.shape)}"
            )
        return x, y

    def _forward(self, views, labels, training):
        shape = ops.shape(views)
        batch, num_views = shape[0], shape[1]
        flat = _merge_views(views)
        features = self.encoder(flat, training=training)
        projections = self.head(features, training=training)
        projections = ops.reshape(projections, (batch, num_views, projections.shape[-1]))
        contrastive = self.contrastive_loss(y_true=labels, y_pred=projections)
        contrastive = ops.cast(contrastive, "float32")
        total = contrastive
        classifier_terms = None
        if self.classifier is not None and labels is not None:
            class_ids = labels
            if labels.shape.rank == 2 and labels.shape[-1] not in (None, 1):
                class_ids = ops.argmax(labels, axis=-1)
            class_ids = ops.reshape(class_ids, (-1,))
            # Every view of a sample carries its label; rows of `features` are sample-major.
            class_ids = ops.reshape(
                ops.repeat(ops.expand_dims(class_ids, 1), num_views, axis=1), (-1,)
            )
            logits = self.classifier(ops.stop_gradient(features), training=training)
            logits = ops.cast(logits, "float32")
            classifier_loss = self._classifier_loss_fn(class_ids, logits)
            total = total + self.classifier_loss_weight * classifier_loss
            classifier_terms = (class_ids, logits, classifier_loss)
        if self.losses:
            total = total + scale_loss_for_distribution(
                ops.cast(ops.sum(self.losses), "float32")
            )
        return total, contrastive, classifier_terms, batch

    def _update_metrics(self, total, contrastive, classifier_terms, batch):
        self.total_loss_tracker.update_state(
            unscale_loss_for_distribution(total), sample_weight=batch
        )
        self.contrastive_loss_tracker.update_state(
            unscale_loss_for_distribution(contrastive), sample_weight=batch
        )
        if classifier_terms is not None:
            class_ids, logits, classifier_loss = classifier_terms
            self.classifier_loss_tracker.update_state(
                unscale_loss_for_distribution(classifier_loss), sample_weight=batch
            )
            self.classifier_accuracy.update_state(class_ids, logits)
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        views, labels = self._unpack(data)
        with tf.GradientTape() as tape:
            total, contrastive, classifier_terms, batch = self._forward(
                views, labels, training=True
            )
            scaled = self.optimizer.scale_loss(total)
        weights = self.trainable_weights
        if self.classifier is not None and classifier_terms is None:
            # Unlabelled (SimCLR) batches leave the classifier untouched.
            skip = {id(w) for w in self.classifier.trainable_weights}
            weights = [w for w in weights if id(w) not in skip]
        gradients = tape.gradient(scaled, weights)
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self._update_metrics(total, contrastive, classifier_terms, batch)

    def test_step(self, data):
        views, labels = self._unpack(data)
        total, contrastive, classifier_terms, batch = self._forward(views, labels, training=False)
        return self._update_metrics(total, contrastive, classifier_terms, batch)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "head": keras.saving.serialize_keras_object(self.head),
                "loss": keras.saving.serialize_keras_object(self.contrastive_loss),
                "num_classes": self.num_classes,
                "classifier_loss_weight": self.classifier_loss_weight,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("encoder", "head", "loss"):
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
