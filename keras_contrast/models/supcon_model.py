"""`SupConModel`: supervised contrastive pretraining, in-batch or with a labelled queue."""

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.losses.queue_supcon import queue_supcon_loss
from keras_contrast.losses.supcon import SupConLoss
from keras_contrast.models.queue import KeyQueue
from keras_contrast.models.simclr import symmetric_pairs
from keras_contrast.models.trainer import (
    BaseOutputs,
    ContrastiveTrainer,
    ContrastPair,
    check_int,
    check_number,
    unscale_loss_for_distribution,
)


@keras.saving.register_keras_serializable(package="keras_contrast")
class SupConModel(ContrastiveTrainer):
    """Supervised contrastive pretraining (SupCon; SimCLR when the batch has no labels).

    **In-batch** (`queue_size=None`, the default): every view (query, key and any extra
    views) goes through encoder and head in one pass (BatchNorm sees every view), and the
    projections `[B, V, d]` feed `loss` (default `SupConLoss()`: L_out with negatives
    gathered across replicas). Labels are int `[B]` or one-hot; without labels the loss is
    SimCLR's NT-Xent.

    **With a labelled queue** (`queue_size=K`): the memory-efficient SupCon of the paper's
    ImageNet experiment (8,192 keys at batch 256). A momentum key encoder (EMA of encoder
    and head, momentum `momentum`) projects the key view; each anchor (online projection
    of the query view) contrasts against the gathered batch keys followed by the `K` queued
    keys, its positives every key with its label (`keras_contrast.losses.queue_supcon_loss`,
    with the temperature and `base_temperature` of `loss`); after the step the batch keys
    are enqueued **with their labels** (FIFO). Labels are required; `K` must be a multiple
    of the global batch.

    Add-ons see, in-batch, the two directions query->key-batch and key->query-batch (weight
    1/2 each); with the queue, the query anchors against batch keys + queue.

    Batches: `(views [B, V, H, W, C], labels)`, `views`, or the trainers' dict
    `{"query", "key"[, "strong"], "labels"}`. See `ContrastiveTrainer` for the online
    probe (`num_classes`), `z_std` and `evaluate()`.

    Args:
        encoder: a built Keras model mapping images to features, e.g.
            `keras_contrast.models.ResNet`.
        head: the projection head. Defaults to `ProjectionHead()` (MLP, 128-d).
        loss: the in-batch contrastive loss, called as `loss(y_true=labels_or_None,
            y_pred=projections [B, V, d])` returning a Keras-reduced scalar. With a queue,
            its `temperature` and `base_temperature` (if it has them) set the queue loss's.
            Defaults to `SupConLoss()` (T = 0.1).
        num_classes: classes of the online linear probe; `None` for no probe. Defaults to
            `None`.
        queue_size: `None` (in-batch) or the number of labelled keys `K`. Defaults to
            `None`.
        momentum: EMA momentum of the key encoder (with a queue), in `[0, 1]`. Defaults to
            `0.999`.
        add_ons: objectives from `keras_contrast.objectives`. Defaults to `()`.
        seed: seed of the queue's initial keys and the add-ons' draws. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    model = SupConModel(
        encoder=ResNet(depth=18, width=64, image_shape=(32, 32, 3)),
        loss=keras_contrast.losses.SupConLoss(temperature=0.1),
        num_classes=10,            # online probe: fit logs probe_accuracy
        queue_size=8192,           # optional: momentum encoder + labelled queue
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    model.fit(two_view_dataset, epochs=1)  # yields (views [B, 2, 32, 32, 3], labels [B])
    ```

    References:
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
    """

    def __init__(
        self,
        encoder,
        head=None,
        loss=None,
        num_classes=None,
        queue_size=None,
        momentum=0.999,
        add_ons=(),
        seed=None,
        **kwargs,
    ):
        super().__init__(
            encoder, head=head, add_ons=add_ons, num_classes=num_classes, seed=seed, **kwargs
        )
        if loss is not None and not callable(loss):
            raise ValueError(f"`loss` must be a Keras loss or None. Received: loss={loss!r}")
        check_int("queue_size", queue_size, allow_none=True)
        check_number("momentum", momentum, minimum=0.0, inclusive=True, maximum=1.0)
        self.contrastive_loss = loss if loss is not None else SupConLoss()
        self.queue_size = queue_size
        self.momentum = momentum
        self.queue = None
        if queue_size is not None:
            self.temperature = getattr(self.contrastive_loss, "temperature", 0.1)
            self.base_temperature = getattr(self.contrastive_loss, "base_temperature", None)
            self.build_momentum_network()
            self.queue = KeyQueue(
                queue_size, self.projection_dim, seed=seed, with_labels=True, name="queue",
                dtype="float32",  # keys are compared in float32 under any dtype policy
            )
        self.built = True

    def validate_views(self, views):
        if self.queue is not None and views.labels is None:
            raise ValueError(
                "SupConModel(queue_size=...) needs labels in every batch (positives are the "
                "keys of the same label). Received a batch without labels."
            )

    def _embed(self, images, training):
        return self.project(images, training)[1]

    def compute_base(self, views, training):
        if self.queue is not None:
            return self._queue_outputs(views, training)
        all_views = [views.query[0], views.key] + views.extra
        batch = tf.shape(views.key)[0]
        features, z = self.project(tf.concat(all_views, axis=0), training)
        num_views = len(all_views)
        projections = tf.transpose(
            tf.reshape(z, [num_views, batch, self.projection_dim]), [1, 0, 2]
        )
        loss = self.contrastive_loss(y_true=views.labels, y_pred=projections)
        loss = unscale_loss_for_distribution(tf.cast(loss, "float32"))
        pairs = []
        if self.add_ons:
            pairs = symmetric_pairs(views.query[0], views.key, z[:batch], z[batch : 2 * batch])
        return BaseOutputs(
            terms={self.base_loss_name: loss},
            pairs=pairs,
            embed=self._embed,
            features=features[:batch],
            projections=z[:batch],
        )

    def _queue_outputs(self, views, training):
        features, anchors = self.project(views.query[0], training)
        keys = self.momentum_project(views.key, training)
        labels = self._class_ids(views.labels)
        (all_keys, all_labels), offset = gather_from_replicas(keys, labels)
        key_set = tf.concat([all_keys, tf.stop_gradient(self.queue())], axis=0)
        key_labels = tf.concat([all_labels, tf.convert_to_tensor(self.queue.labels)], axis=0)
        loss = queue_supcon_loss(
            labels, anchors, key_labels, key_set, self.temperature, self.base_temperature
        )
        pairs = []
        if self.add_ons:
            positive = offset + tf.range(tf.shape(anchors)[0], dtype=tf.int32)
            pairs = [ContrastPair(views.query[0], anchors, key_set, positive)]
        return BaseOutputs(
            terms={self.base_loss_name: tf.reduce_mean(loss)},
            pairs=pairs,
            embed=self._embed,
            features=features,
            projections=anchors,
            state={"keys": keys, "labels": labels},
        )

    def after_step(self, outputs):
        if self.queue is None:
            return
        self.update_momentum_network(self.momentum)
        self.queue.enqueue(outputs.state["keys"], outputs.state["labels"])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "loss": keras.saving.serialize_keras_object(self.contrastive_loss),
                "queue_size": self.queue_size,
                "momentum": self.momentum,
            }
        )
        return config
