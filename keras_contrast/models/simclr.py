"""`SimCLRModel`: NT-Xent over two views, negatives from the global batch."""

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.losses.supcon import supcon_loss
from keras_contrast.models.trainer import (
    BaseOutputs,
    ContrastiveTrainer,
    ContrastPair,
    check_number,
)


def symmetric_pairs(images_1, images_2, z1, z2):
    """The two directions of a two-view loss as add-on pairs: each view's anchors against the
    other view's (gathered) batch, positives at this replica's offset, weight 1/2 each."""
    (z1_all, z2_all), offset = gather_from_replicas(z1, z2)
    positive = offset + tf.range(tf.shape(z1)[0], dtype=tf.int32)
    return [
        ContrastPair(images_1, z1, z2_all, positive, weight=0.5),
        ContrastPair(images_2, z2, z1_all, positive, weight=0.5),
    ]


@keras.saving.register_keras_serializable(package="keras_contrast")
class SimCLRModel(ContrastiveTrainer):
    """SimCLR: NT-Xent between two weak views, every other view of the batch a negative.

    Both views go through encoder and head in one pass (BatchNorm over both, as in the
    reference); with `z` the L2-normalised projections of the `2N` views of the global
    batch, each anchor's positive is the other view of its image:

    ```
    contrastive_loss = mean_a -log( exp(z_a . z_p(a) / T) / sum_{c != a} exp(z_a . z_c / T) )
    ```

    computed by `keras_contrast.losses.supcon_loss` without labels (negatives gathered across
    replicas). Add-ons (`keras_contrast.objectives.CLSA`, `MixCo`) see two contrast pairs,
    each view against the other view's batch, weighted 1/2.

    Batches: `{"query": view_1, "key": view_2[, "strong": ...]}` (labels, if any, feed
    only the online probe), or `views [B, 2, H, W, C]`. See `ContrastiveTrainer` for the
    probe, `z_std`, and the arguments it shares.

    Args:
        encoder: a built Keras model mapping images to features.
        head: projection head. Defaults to `ProjectionHead()` (MLP, 128-d).
        temperature: NT-Xent temperature `T` > 0. Defaults to `0.5` (SimCLR's CIFAR-10
            setting and the MixCo-SimCLR reference).
        add_ons: objectives from `keras_contrast.objectives`. Defaults to `()`.
        num_classes: classes of the online probe, or `None`. Defaults to `None`.
        seed: seed of the add-ons' random draws. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    model = SimCLRModel(ResNet(depth=18, width=16, image_shape=(32, 32, 3)),
                        add_ons=[keras_contrast.objectives.MixCo(temperature=0.5)])
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    model.fit(views_dataset)   # {"query": [B, 32, 32, 3], "key": [B, 32, 32, 3]}
    ```

    References:
        - [Chen et al., 2020. A Simple Framework for Contrastive Learning of Visual
          Representations](https://arxiv.org/abs/2002.05709)
    """

    def __init__(
        self, encoder, head=None, temperature=0.5, add_ons=(), num_classes=None, seed=None,
        **kwargs,
    ):
        super().__init__(
            encoder, head=head, add_ons=add_ons, num_classes=num_classes, seed=seed, **kwargs
        )
        check_number("temperature", temperature)
        self.temperature = temperature
        self.built = True

    def compute_base(self, views, training):
        x1, x2 = views.query[0], views.key
        batch = tf.shape(x1)[0]
        features, z = self.project(tf.concat([x1, x2], axis=0), training)
        z1, z2 = z[:batch], z[batch:]
        loss = supcon_loss(None, tf.stack([z1, z2], axis=1), temperature=self.temperature)
        pairs = symmetric_pairs(x1, x2, z1, z2) if self.add_ons else []
        return BaseOutputs(
            terms={self.base_loss_name: tf.reduce_mean(loss)},
            pairs=pairs,
            embed=lambda images, training: self.project(images, training)[1],
            features=features[:batch],
            projections=z1,
        )

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config
