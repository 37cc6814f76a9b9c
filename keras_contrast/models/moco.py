"""MoCo-v2 trainer with optional CLSA (stronger augmentations) and MixCo (mixed queries).

Batch format consumed by `MoCoModel.fit` (views come from the input pipeline):

```python
{
    "query": images,          # [B, H, W, C] weak view(s): a tensor, or a tuple of tensors
                              # for multi-crop (e.g. (224 crop, 96 crop, ...)); use tuples:
                              # tf.data stacks a list into one tensor.
    "key": images,            # [B, H, W, C] the other weak view, for the momentum encoder.
    "strong": images,         # optional (required with clsa=True): strongly augmented
                              # view(s): a tensor or a tuple of tensors of any sizes.
}
```

Labels, if the dataset yields `(x, y)`, are ignored.
"""

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.losses.ddm import ddm_loss
from keras_contrast.losses.info_nce import info_nce_loss
from keras_contrast.losses.mixco import mixco_loss, mixco_targets
from keras_contrast.models.momentum import (
    clone_momentum_encoder,
    momentum_pairs,
    momentum_update,
)
from keras_contrast.models.queue import KeyQueue

# MixCo's mixing weights in `evaluate()`: a fixed stateless seed, so that evaluation is
# repeatable and does not advance the seed generator that training draws from.
_EVALUATION_SEED = (20_210_415, 7)


def mix_halves(images, seed):
    """MixCo's mixing: `lam_i x_i + (1 - lam_i) x_{i + B/2}`, `lam ~ Beta(1, 1) = U(0, 1)`.

    What `keras_contrast.layers.MixCoMixing` does in a pipeline, here for the trainers, which
    mix inside the step (and so need no dependency on the layers package). Under a strategy
    each replica folds its replica id into `seed`, so replicas draw different weights.

    Args:
        images: `[B, ...]`; the first half is mixed with the second half.
        seed: a stateless seed, shape `[2]`.

    Returns:
        `(lam, mixed)`: float32 `[B // 2]`, and `[B // 2, ...]` in the dtype of `images`.
    """
    half = tf.shape(images)[0] // 2
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        seed = tf.random.experimental.stateless_fold_in(
            tf.cast(seed, tf.int64), tf.cast(ctx.replica_id_in_sync_group, tf.int64)
        )
    lam = tf.random.stateless_uniform([half], seed=seed)
    shape = tf.concat([[half], tf.ones([tf.rank(images) - 1], tf.int32)], 0)
    lam_b = tf.cast(tf.reshape(lam, shape), images.dtype)
    return lam, lam_b * images[:half] + (1 - lam_b) * images[half : 2 * half]


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


def _as_list(views):
    return list(views) if isinstance(views, (list, tuple)) else [views]


def _check_positive(name, value, allow_zero=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be a number {bound}. Received: {name}={value!r}")


def _output_dim(encoder):
    try:
        return int(encoder.outputs[0].shape[-1])
    except (AttributeError, ValueError, TypeError, IndexError):
        return None


@keras.saving.register_keras_serializable(package="keras_contrast")
class MoCoModel(keras.Model):
    """MoCo-v2 trainer: momentum key encoder, queue of negatives, optional CLSA and MixCo.

    `model.fit(dataset)` trains `encoder` (a backbone plus projection head, any
    `keras.Model`) with MoCo-v2. Per step, with `q` the L2-normalised query features, `k`
    the momentum encoder's keys (unshuffled) and `Q` the queue:

    ```
    contrastive = sum over weak crops c of mean_i info_nce(q_c_i, k_i, Q, T)
    ddm         = sum over (weak c, strong s) of mean_i ddm(w_c_i, w_s_i, T_clsa)   # clsa
                  with w_v_i = [v_i . k_i, v_i . Q_1, ..., v_i . Q_K]
    mix         = mean_i mixco(t_i, m_i . [k_1..k_B, Q_1..Q_K], T_mix)               # mixco
                  with m_i the features of lam_i * x_i + (1 - lam_i) * x_{i+B/2}
    loss        = contrastive + clsa_weight * ddm + mixco_weight * mix
    ```

    After the optimizer step the key encoder is updated by EMA
    (`theta_k <- m theta_k + (1 - m) theta_q`) and the global batch of keys is enqueued.
    The fit logs report `loss`, `contrastive_loss`, and `ddm_loss` / `mixco_loss` when
    enabled.

    Batch format: a dict `{"query": ..., "key": ..., "strong": ...}` as in the module
    docstring. With several weak crops (`"query"` a list) each contributes a contrastive
    term and a DDM term with every strong crop (CLSA's multi-crop); MixCo mixes the first
    query crop. Multi-crop needs an encoder that accepts several image sizes.

    Distribution: works under `tf.distribute` strategies (Keras runs `train_step` per
    replica). The loss is scaled like Keras' own (`1 / num_replicas`) so gradients equal
    those of the global batch; keys are shuffled across the global batch before the key
    encoder (shuffle-BN); the global batch of keys is enqueued; the EMA runs per replica.
    Batches must have a fixed size that divides `queue_size` (use `drop_remainder=True`).

    The reference MoCo updates the key encoder at the start of each step with the current
    query weights; updating it after the optimizer step, as here, gives the same sequence
    of key-encoder weights.

    Args:
        encoder: a built `keras.Model` mapping images to features `[B, dim]`.
        queue_size: number of negative keys `K`. Defaults to `65536`.
        momentum: EMA momentum `m` of the key encoder, in `[0, 1]`. Defaults to `0.999`.
        temperature: InfoNCE temperature `T`. Defaults to `0.2` (MoCo-v2).
        shuffle_bn: shuffle keys across the global batch before the key encoder.
            Defaults to `True`.
        bn_splits: run the key encoder on this many sub-batches of the (shuffled) local
            batch, so its batch-norm statistics come from random subsets (the one-device
            equivalent of shuffle-BN). Defaults to `1`.
        clsa: add CLSA's DDM loss on the `"strong"` views. Defaults to `False`.
        clsa_weight: weight `beta` of the DDM loss. Defaults to `1.0`.
        clsa_temperature: DDM temperature. Defaults to `0.2`.
        mixco: add MixCo's mixed-query loss. Defaults to `False`.
        mixco_weight: weight of the MixCo loss. Defaults to `1.0`.
        mixco_temperature: MixCo temperature. Defaults to `0.05`.
        dim: feature dimension; inferred from `encoder.outputs` when `None`.
            Defaults to `None`.
        seed: seed of the queue initialisation, the shuffles and the mixing weights.
            Defaults to `None`.
        **kwargs: passed to `keras.Model` (e.g. `name`).

    Example:

    ```python
    encoder = keras.Sequential([
        keras.Input((16, 16, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(16),
    ])
    model = MoCoModel(encoder, queue_size=64, clsa=True, mixco=True)
    model.compile(optimizer=keras.optimizers.SGD(0.03, momentum=0.9))
    views = {"query": q_images, "key": k_images, "strong": strong_images}
    model.fit(tf.data.Dataset.from_tensor_slices(views).batch(8, drop_remainder=True))
    ```

    References:
        - [He et al., 2020 (MoCo)](https://arxiv.org/abs/1911.05722),
          [Chen et al., 2020 (MoCo-v2)](https://arxiv.org/abs/2003.04297).
        - [Wang & Qi, 2021 (CLSA)](https://arxiv.org/abs/2104.07713).
        - [Kim et al., 2020 (MixCo)](https://arxiv.org/abs/2010.06300).
    """

    def __init__(
        self,
        encoder,
        queue_size=65536,
        momentum=0.999,
        temperature=0.2,
        shuffle_bn=True,
        bn_splits=1,
        clsa=False,
        clsa_weight=1.0,
        clsa_temperature=0.2,
        mixco=False,
        mixco_weight=1.0,
        mixco_temperature=0.05,
        dim=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(momentum, (int, float)) or isinstance(momentum, bool) or not (
            0 <= momentum <= 1
        ):
            raise ValueError(f"`momentum` must be in [0, 1]. Received: momentum={momentum!r}")
        for name, value in (
            ("temperature", temperature),
            ("clsa_temperature", clsa_temperature),
            ("mixco_temperature", mixco_temperature),
        ):
            _check_positive(name, value)
        for name, value in (("clsa_weight", clsa_weight), ("mixco_weight", mixco_weight)):
            _check_positive(name, value, allow_zero=True)
        if isinstance(bn_splits, bool) or not isinstance(bn_splits, int) or bn_splits < 1:
            raise ValueError(f"`bn_splits` must be an int >= 1. Received: bn_splits={bn_splits!r}")
        inferred = _output_dim(encoder) if isinstance(encoder, keras.Model) else None
        if dim is None:
            dim = inferred
        if dim is None:
            raise ValueError(
                "Could not infer the feature size from `encoder.outputs`; pass `dim`. "
                f"Received: dim=None, encoder={getattr(encoder, 'name', encoder)!r}"
            )
        if inferred is not None and inferred != dim:
            raise ValueError(
                f"`dim` must match the encoder's output size {inferred}. Received: dim={dim}"
            )
        self.encoder = encoder
        self.queue_size = queue_size
        self.momentum = momentum
        self.temperature = temperature
        self.shuffle_bn = bool(shuffle_bn)
        self.bn_splits = bn_splits
        self.clsa = bool(clsa)
        self.clsa_weight = clsa_weight
        self.clsa_temperature = clsa_temperature
        self.mixco = bool(mixco)
        self.mixco_weight = mixco_weight
        self.mixco_temperature = mixco_temperature
        self.dim = dim
        self.seed = seed
        self.key_encoder = clone_momentum_encoder(encoder)
        self._pairs = momentum_pairs(self.encoder, self.key_encoder)
        self.queue = KeyQueue(queue_size, dim, seed=seed, name="queue")
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.contrastive_tracker = keras.metrics.Mean(name="contrastive_loss")
        self.ddm_tracker = keras.metrics.Mean(name="ddm_loss") if self.clsa else None
        self.mixco_tracker = keras.metrics.Mean(name="mixco_loss") if self.mixco else None
        self.built = True  # every sub-layer is built: weights can be saved/loaded at once

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.contrastive_tracker, self.ddm_tracker]
        return [t for t in trackers + [self.mixco_tracker] if t is not None]

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            inputs = inputs["query"]
        return self.encoder(_as_list(inputs)[0], training=training)

    # -- pieces of the step ------------------------------------------------------------

    def _unpack(self, x):
        if not isinstance(x, dict) or "query" not in x or "key" not in x:
            got = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(
                "MoCoModel expects batches {'query': images or [crops], 'key': images, "
                f"'strong': images or [crops] (with clsa=True)}}. Received: {got}"
            )
        queries = _as_list(x["query"])
        strongs = _as_list(x["strong"]) if x.get("strong") is not None else []
        if self.clsa and not strongs:
            raise ValueError(
                "`clsa=True` needs strong views in the batch under 'strong'. "
                f"Received keys: {sorted(x)}"
            )
        return queries, x["key"], strongs

    def _encode_keys(self, images, training=True):
        """Momentum-encoder keys in the original order, L2-normalised, no gradient.

        In inference mode (`training=False`, used by `evaluate`) BatchNorm uses its moving
        statistics, so there is no batch statistic to leak: no shuffle, no split.
        """
        permutation = None
        if training and self.shuffle_bn:
            images, permutation = shuffle_across_replicas(images, self.seed_generator.next())
        if training and self.bn_splits > 1:
            chunks = tf.split(images, self.bn_splits, axis=0)
            keys = tf.concat([self.key_encoder(c, training=True) for c in chunks], axis=0)
        else:
            keys = self.key_encoder(images, training=training)
        keys = tf.math.l2_normalize(tf.cast(keys, "float32"), axis=-1)
        if permutation is not None:
            keys = unshuffle_across_replicas(keys, permutation)
        return tf.stop_gradient(keys)

    def _features(self, images, training=True):
        return tf.math.l2_normalize(
            tf.cast(self.encoder(images, training=training), "float32"), axis=-1
        )

    def compute_losses(self, queries, key_images, strongs, training=True):
        """Loss terms of one step (the local batch); call inside a `GradientTape`.

        `training=False` (what `evaluate` uses) runs both encoders in inference mode
        (BatchNorm moving statistics, not updated) and mixes with a fixed seed, so the
        model's state is left exactly as it was.
        """
        keys = self._encode_keys(key_images, training)
        negatives = tf.stop_gradient(self.queue())
        batch = tf.shape(keys)[0]
        terms = {}

        def features(images):
            return self._features(images, training)

        if self.mixco:
            seed = self.seed_generator.next() if training else _EVALUATION_SEED
            lam, mixed = mix_halves(queries[0], seed)
            both = features(tf.concat([queries[0], mixed], axis=0))
            query_features = [both[:batch]] + [features(q) for q in queries[1:]]
            mixed_features = both[batch:]
        else:
            query_features = [features(q) for q in queries]
        terms["contrastive_loss"] = tf.add_n(
            [
                tf.reduce_mean(info_nce_loss(q, keys, negatives, self.temperature))
                for q in query_features
            ]
        )
        if self.clsa:

            def similarities(v):
                positive = tf.reduce_sum(v * keys, axis=-1, keepdims=True)
                return tf.concat([positive, tf.matmul(v, negatives, transpose_b=True)], -1)

            strong_similarities = [similarities(features(s)) for s in strongs]
            terms["ddm_loss"] = tf.add_n(
                [
                    tf.reduce_mean(ddm_loss(similarities(q), s, self.clsa_temperature))
                    for q in query_features
                    for s in strong_similarities
                ]
            )
        if self.mixco:
            logits = tf.matmul(mixed_features, tf.concat([keys, negatives], 0), transpose_b=True)
            targets = mixco_targets(lam, batch + self.queue_size)
            terms["mixco_loss"] = tf.reduce_mean(
                mixco_loss(targets, logits, self.mixco_temperature)
            )
        total = terms["contrastive_loss"]
        if self.clsa:
            total = total + self.clsa_weight * terms["ddm_loss"]
        if self.mixco:
            total = total + self.mixco_weight * terms["mixco_loss"]
        terms["loss"] = total
        return terms, keys

    def _static_checks(self, queries, key_images):
        batch = key_images.shape[0]
        if batch is None:
            return
        if self.mixco and batch % 2:
            raise ValueError(f"`mixco=True` needs an even batch size. Received: batch={batch}")
        if batch % self.bn_splits:
            raise ValueError(
                f"The batch size must be a multiple of `bn_splits`. Received: batch={batch}, "
                f"bn_splits={self.bn_splits}"
            )

    def train_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        queries, key_images, strongs = self._unpack(x)
        self._static_checks(queries, key_images)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            terms, keys = self.compute_losses(queries, key_images, strongs)
            # Keras' scaling: per-replica mean / num_replicas; gradients are summed across
            # replicas by the optimizer, giving the global-batch mean.
            loss = terms["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
            if hasattr(self.optimizer, "scale_loss"):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, trainable)
        self.optimizer.apply_gradients(zip(gradients, trainable))
        momentum_update(self._pairs, self.momentum)
        self.queue.enqueue(keys)
        batch = tf.shape(keys)[0]
        self.loss_tracker.update_state(terms["loss"], sample_weight=batch)
        self.contrastive_tracker.update_state(terms["contrastive_loss"], sample_weight=batch)
        if self.clsa:
            self.ddm_tracker.update_state(terms["ddm_loss"], sample_weight=batch)
        if self.mixco:
            self.mixco_tracker.update_state(terms["mixco_loss"], sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        queries, key_images, strongs = self._unpack(x)
        self._static_checks(queries, key_images)
        terms, _ = self.compute_losses(queries, key_images, strongs, training=False)
        batch = tf.shape(key_images)[0]
        for tracker in self.metrics:
            tracker.update_state(terms[tracker.name], sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "temperature": self.temperature,
            "shuffle_bn": self.shuffle_bn,
            "bn_splits": self.bn_splits,
            "clsa": self.clsa,
            "clsa_weight": self.clsa_weight,
            "clsa_temperature": self.clsa_temperature,
            "mixco": self.mixco,
            "mixco_weight": self.mixco_weight,
            "mixco_temperature": self.mixco_temperature,
            "dim": self.dim,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
