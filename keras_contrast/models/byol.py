"""`BYOLModel`: online network + predictor against an EMA target network."""

import math

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.losses.byol import byol_loss
from keras_contrast.models.heads import ProjectionHead
from keras_contrast.models.trainer import (
    BaseOutputs,
    ContrastiveTrainer,
    ContrastPair,
    check_int,
    check_number,
    l2_normalize,
)


@keras.saving.register_keras_serializable(package="keras_contrast")
class BYOLModel(ContrastiveTrainer):
    """BYOL: predict the target network's projection of the other view; no negatives.

    The online network (encoder, head, predictor `q`) predicts, for each view, the target
    network's projection of the other view; the target network (encoder and head) is an EMA
    of the online one and gets no gradient. With `p_v = q(head(encoder(x_v)))` and
    `z'_v = target(x_v)`:

    ```
    byol_loss = mean_i [ (2 - 2 cos(p_1i, z'_2i)) + (2 - 2 cos(p_2i, z'_1i)) ]
    tau_k     = 1 - (1 - momentum) * (cos(pi k / total_steps) + 1) / 2
    ```

    (`keras_contrast.losses.byol_loss`, symmetric as in the paper). After optimizer step
    `k` (0-based) the target moves `theta' <- tau_k theta' + (1 - tau_k) theta`; `tau`
    rises from `momentum` to 1 at `total_steps` (constant `momentum` when `total_steps` is
    `None`). Each view goes through the networks on its own (BatchNorm per view).

    Add-ons see both directions (weight 1 each): anchors are the normalised predictions, the
    key set the target projections of the other view over the gathered batch (BYOL has no
    queue or negatives; see `keras_contrast.objectives.CLSA`).

    Batches: `{"query": view_1, "key": view_2[, "strong": ...][, "labels"]}` (labels feed
    only the online probe), or `views [B, 2, H, W, C]`.

    Args:
        encoder: a built Keras model mapping images to features.
        head: the projector. Defaults to BYOL's MLP
            `ProjectionHead(256, hidden_dims=(4096,), use_batch_norm=True, normalize=False)`.
        predictor: the predictor, mapping projections to projections. Defaults to the same
            MLP shape with the head's output size.
        momentum: base EMA momentum `tau_base` of the target network, in `[0, 1]`.
            Defaults to `0.996` (BYOL's ImageNet setting).
        total_steps: optimizer steps of the whole run, for the cosine schedule of `tau`;
            `None` keeps `tau = momentum`. Defaults to `None`.
        add_ons: objectives from `keras_contrast.objectives`. Defaults to `()`.
        num_classes: classes of the online probe, or `None`. Defaults to `None`.
        seed: seed of the add-ons' random draws. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    model = BYOLModel(ResNet(depth=18, width=16, image_shape=(32, 32, 3)),
                      total_steps=epochs * steps_per_epoch)
    model.compile(optimizer=keras_contrast.optimizers.LARS(1.0, weight_decay=1.5e-6))
    model.fit(views)   # {"query": [B, 32, 32, 3], "key": [B, 32, 32, 3]}
    ```

    References:
        - [Grill et al., 2020. Bootstrap Your Own Latent](https://arxiv.org/abs/2006.07733)
    """

    base_loss_name = "byol_loss"

    def __init__(
        self,
        encoder,
        head=None,
        predictor=None,
        momentum=0.996,
        total_steps=None,
        add_ons=(),
        num_classes=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            encoder, head=head, add_ons=add_ons, num_classes=num_classes, seed=seed, **kwargs
        )
        check_number("momentum", momentum, minimum=0.0, inclusive=True, maximum=1.0)
        check_int("total_steps", total_steps, allow_none=True)
        if predictor is not None and not isinstance(predictor, keras.layers.Layer):
            raise ValueError(
                f"`predictor` must be a Keras layer or None. Received: predictor={predictor!r}"
            )
        self.momentum = momentum
        self.total_steps = total_steps
        self.predictor = predictor if predictor is not None else _mlp(self.projection_dim)
        if not self.predictor.built:
            self.predictor.build((None, self.projection_dim))
        self.build_momentum_network()
        self.built = True

    def default_head(self, feature_dim):
        return _mlp(256)

    def momentum_at(self, step):
        """`tau` after optimizer step `step` (0-based): the cosine schedule to 1."""
        if self.total_steps is None:
            return tf.constant(self.momentum, tf.float32)
        progress = tf.minimum(tf.cast(step, tf.float32) / float(self.total_steps), 1.0)
        return 1.0 - (1.0 - self.momentum) * (tf.cos(math.pi * progress) + 1.0) / 2.0

    def predict_views(self, images, training):
        """`(features, normalised projections, normalised predictions)` of the online net."""
        features = self.encoder(images, training=training)
        projection = self.head(features, training=training)
        prediction = self.predictor(projection, training=training)
        return features, l2_normalize(projection), l2_normalize(prediction)

    def project(self, images, training):
        features = self.encoder(images, training=training)
        return features, l2_normalize(self.head(features, training=training))

    def compute_base(self, views, training):
        x1, x2 = views.query[0], views.key
        features_1, z1, p1 = self.predict_views(x1, training)
        _, _, p2 = self.predict_views(x2, training)
        t1 = self.momentum_project(x1, training)
        t2 = self.momentum_project(x2, training)
        loss = tf.reduce_mean(byol_loss(t2, p1) + byol_loss(t1, p2))
        pairs = []
        if self.add_ons:
            (t1_all, t2_all), offset = gather_from_replicas(t1, t2)
            positive = offset + tf.range(tf.shape(p1)[0], dtype=tf.int32)
            pairs = [
                ContrastPair(x1, p1, t2_all, positive),
                ContrastPair(x2, p2, t1_all, positive),
            ]
        return BaseOutputs(
            terms={self.base_loss_name: loss},
            pairs=pairs,
            embed=lambda images, training: self.predict_views(images, training)[2],
            features=features_1,
            projections=z1,
        )

    def after_step(self, outputs):
        self.update_momentum_network(self.momentum_at(self.optimizer.iterations - 1))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "predictor": keras.saving.serialize_keras_object(self.predictor),
                "momentum": self.momentum,
                "total_steps": self.total_steps,
            }
        )
        return config


def _mlp(output_dim):
    return ProjectionHead(
        output_dim=output_dim, hidden_dims=(4096,), use_batch_norm=True, normalize=False
    )
