"""MoCo-v2: momentum key encoder, queue of negatives, shuffle-BN."""

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.losses.info_nce import info_nce_loss
from keras_contrast.models.queue import KeyQueue
from keras_contrast.models.trainer import (
    BaseOutputs,
    ContrastiveTrainer,
    ContrastPair,
    check_int,
    check_number,
)


def shuffle_across_replicas(images, seed):
    """Shuffles a batch across the **global** batch (MoCo's shuffle-BN), before the key encoder.

    All replicas' images are all-gathered, permuted with one permutation shared by every
    replica (replica 0's), and each replica takes its slice of the permuted global batch.
    So a replica's key encoder sees batch-norm statistics of random samples of other
    replicas rather than those of its own queries. Outside a strategy (one device) the
    batch is permuted locally; combine it with `bn_splits > 1` in `MoCoModel` (key encoder
    run on sub-batches) for the single-device equivalent. Replicas must hold equal batches.

    Args:
        images: the local batch `[n, ...]`.
        seed: a stateless random seed, int tensor of shape `[2]`.

    Returns:
        `(shuffled, permutation)`: the local `[n, ...]` slice of the shuffled global batch and
        the global permutation `[N]` to pass to `unshuffle_across_replicas`.
    """
    (all_images,), offset = gather_from_replicas(images)
    total = tf.shape(all_images)[0]
    local = tf.shape(images)[0]
    permutation = tf.argsort(tf.random.stateless_uniform([total], seed=seed))
    permutation = tf.cast(permutation, tf.int32)
    # One permutation for all replicas: everyone takes replica 0's.
    (all_permutations,), _ = gather_from_replicas(permutation)
    permutation = all_permutations[:total]
    mine = tf.slice(permutation, [offset], [local])
    return tf.gather(all_images, mine), permutation


def unshuffle_across_replicas(features, permutation):
    """Restores the original order of features computed on `shuffle_across_replicas` output.

    Args:
        features: the local `[n, ...]` outputs for the shuffled local slice.
        permutation: the global permutation returned by `shuffle_across_replicas`.

    Returns:
        The local `[n, ...]` features in the original order of this replica's batch.
    """
    (all_features,), offset = gather_from_replicas(features)
    restored = tf.gather(all_features, tf.math.invert_permutation(permutation))
    return tf.slice(
        restored,
        tf.concat([[offset], tf.zeros([tf.rank(features) - 1], tf.int32)], 0),
        tf.shape(features),
    )


@keras.saving.register_keras_serializable(package="keras_contrast")
class MoCoModel(ContrastiveTrainer):
    """MoCo-v2: queries against a momentum encoder's key and a queue of negatives.

    Per step, with `q` the L2-normalised online projections of a query crop, `k` the
    momentum network's keys of the key view (shuffle-BN, unshuffled, no gradient), `k_all`
    the keys of the global batch and `Q` the queue:

    ```
    contrastive_loss = sum over query crops of mean_i info_nce(q_i, k_i, Q, T)
                       (batch_negatives=True: softmax over [k_all, Q], positive k_i)
    ```

    After the optimizer step the momentum network follows the online one by EMA
    (`theta_k <- m theta_k + (1 - m) theta_q`, encoder and head) and `k_all` is enqueued.

    Add-ons see one pair per query crop: anchors `q`, key set `[k_all, Q]` (the gathered
    batch keys followed by the queue, as CLSA's reference contrasts against for both its
    InfoNCE and DDM terms), positive `k_i`; MixCo mixes the first crop only. With
    `symmetric=True` (CLSA's `--sym`), the key view is also a query against the momentum
    keys of the first query crop, and both directions are summed.

    Batches: `{"query": view or tuple of crops, "key": view[, "strong": ...][, "labels"]}`
    (labels feed only the online probe). Multi-crop needs an encoder that takes several
    sizes. Any global batch up to `queue_size` works, short last batches included.

    Distribution: keys are shuffled across the global batch before the key encoder
    (shuffle-BN), the global batch of keys is enqueued on every replica, the EMA runs per
    replica. On one device shuffle-BN alone is a no-op (one BatchNorm over the batch, so
    query and key can match through batch statistics): by default (`bn_splits=None`) the
    key encoder then runs on sub-batches instead, as MoCo's CIFAR demo does.

    Args:
        encoder: a built Keras model mapping images to features.
        head: projection head. Defaults to `ProjectionHead()` (MoCo-v2's MLP, 128-d).
        queue_size: number of queued negative keys `K`. Defaults to `4096`.
        momentum: EMA momentum `m` of the key network, in `[0, 1]`. Defaults to `0.99`.
        temperature: InfoNCE temperature `T`. Defaults to `0.2` (MoCo-v2).
        shuffle_bn: shuffle the key view across the global batch before the key encoder.
            Defaults to `True`.
        bn_splits: run the key encoder on this many sub-batches of the (shuffled) local
            batch, an int >= 1, or `None`: on one replica the largest of 8, 4, 2 that
            divides the batch into sub-batches of >= 16 keys (128 -> 8, 64 -> 4, 32 -> 2),
            otherwise (several replicas, smaller or unknown batches) 1. Defaults to `None`.
        batch_negatives: also contrast each query against the other keys of the global
            batch (CLSA's reference). Defaults to `False` (MoCo-v2).
        symmetric: add the symmetric direction (key view as query). Defaults to `False`.
        add_ons: objectives from `keras_contrast.objectives`. Defaults to `()`.
        num_classes: classes of the online probe, or `None`. Defaults to `None`.
        seed: seed of the queue initialisation, shuffles and add-on draws. Defaults to
            `None`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    model = MoCoModel(ResNet(depth=18, width=16, image_shape=(32, 32, 3)), queue_size=4096,
                      add_ons=[keras_contrast.objectives.CLSA()])
    model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9))
    model.fit(views)   # {"query": weak, "key": weak, "strong": strong}
    ```

    References:
        - [He et al., 2020 (MoCo)](https://arxiv.org/abs/1911.05722),
          [Chen et al., 2020 (MoCo-v2)](https://arxiv.org/abs/2003.04297).
    """

    def __init__(
        self,
        encoder,
        head=None,
        queue_size=4096,
        momentum=0.99,
        temperature=0.2,
        shuffle_bn=True,
        bn_splits=None,
        batch_negatives=False,
        symmetric=False,
        add_ons=(),
        num_classes=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            encoder, head=head, add_ons=add_ons, num_classes=num_classes, seed=seed, **kwargs
        )
        check_int("queue_size", queue_size)
        check_number("momentum", momentum, minimum=0.0, inclusive=True, maximum=1.0)
        check_number("temperature", temperature)
        check_int("bn_splits", bn_splits, allow_none=True)
        self.queue_size = queue_size
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = bool(shuffle_bn)
        self.bn_splits = bn_splits
        self.batch_negatives = bool(batch_negatives)
        self.symmetric = bool(symmetric)
        self.build_momentum_network()
        # float32 under any dtype policy: keys are compared in float32.
        self.queue = KeyQueue(
            queue_size, self.projection_dim, seed=seed, name="queue", dtype="float32"
        )
        self.built = True

    multi_crop_queries = True

    def validate_views(self, views):
        batch = views.key.shape[0]
        if batch is None and self.bn_splits not in (None, 1):
            raise ValueError(
                f"`bn_splits={self.bn_splits}` needs batches of a static size "
                "(`drop_remainder=True` in the dataset). Received: a batch of unknown size "
                "(the default `bn_splits=None` uses no split for such batches)"
            )
        if batch is not None and batch % self.key_splits(batch):
            raise ValueError(
                f"The batch size must be a multiple of `bn_splits`. Received: batch={batch}, "
                f"bn_splits={self.bn_splits}"
            )

    def key_splits(self, batch):
        """BatchNorm groups of the key encoder for a local `batch` (static int or None)."""
        if self.bn_splits is not None:
            return self.bn_splits
        if batch is None or tf.distribute.get_strategy().num_replicas_in_sync > 1:
            return 1
        return next((s for s in (8, 4, 2) if batch % s == 0 and batch // s >= 16), 1)

    def encode_keys(self, images, training):
        """Momentum keys in the original order, L2-normalised, no gradient.

        In inference mode (`evaluate`) BatchNorm uses its moving statistics: there is no
        batch statistic to leak, so no shuffle and no split.
        """
        permutation = None
        if training and self.shuffle_bn:
            images, permutation = shuffle_across_replicas(images, self.next_seed(training))
        splits = self.key_splits(images.shape[0])
        if training and splits > 1:
            chunks = tf.split(images, splits, axis=0)
            keys = tf.concat([self.momentum_project(c, training) for c in chunks], axis=0)
        else:
            keys = self.momentum_project(images, training)
        if permutation is not None:
            keys = unshuffle_across_replicas(keys, permutation)
        return tf.stop_gradient(keys)

    def _direction(self, query_images, key_images, training, first_crop_only=False):
        """InfoNCE of the query crops against the keys of `key_images`, and its pairs."""
        keys = self.encode_keys(key_images, training)
        queue = tf.stop_gradient(self.queue())
        (all_keys,), offset = gather_from_replicas(keys)
        positive = offset + tf.range(tf.shape(keys)[0], dtype=tf.int32)
        key_set = None
        if self.batch_negatives or self.add_ons:
            key_set = tf.concat([all_keys, queue], axis=0)
        losses, pairs, first = [], [], None
        for index, images in enumerate(query_images):
            features, q = self.project(images, training)
            if first is None:
                first = (features, q)
            if self.batch_negatives:
                logits = tf.matmul(q, key_set, transpose_b=True) / self.temperature
                loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=positive, logits=logits
                )
            else:
                loss = info_nce_loss(q, keys, queue, self.temperature)
            losses.append(tf.reduce_mean(loss))
            if self.add_ons:
                pairs.append(ContrastPair(images, q, key_set, positive, mixable=index == 0))
        return tf.add_n(losses), pairs, first, keys

    def compute_base(self, views, training):
        loss, pairs, (features, q), keys = self._direction(views.query, views.key, training)
        if self.symmetric:
            loss_2, pairs_2, _, _ = self._direction([views.key], views.query[0], training)
            loss = loss + loss_2
            pairs = pairs + pairs_2
        return BaseOutputs(
            terms={self.base_loss_name: loss},
            pairs=pairs,
            embed=lambda images, training: self.project(images, training)[1],
            features=features,
            projections=q,
            state={"keys": keys},
        )

    def after_step(self, outputs):
        self.update_momentum_network(self.momentum)
        self.queue.enqueue(outputs.state["keys"])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "queue_size": self.queue_size,
                "momentum": self.momentum,
                "temperature": self.temperature,
                "shuffle_bn": self.shuffle_bn,
                "bn_splits": self.bn_splits,
                "batch_negatives": self.batch_negatives,
                "symmetric": self.symmetric,
            }
        )
        return config
