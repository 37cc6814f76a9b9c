"""MixCo on a SimCLR base: NT-Xent over two views plus mixed-image semi-positives.

(Lives next to `moco.py` because it shares MixCo's machinery; it has no momentum encoder and
no queue.) Batch format: `{"query": view_1 [B, H, W, C], "key": view_2 [B, H, W, C]}`.
"""

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.losses.mixco import mixco_loss, mixco_targets
from keras_contrast.models.moco import _EVALUATION_SEED, _check_positive, mix_halves


def nt_xent_loss(z1, z2, temperature):
    """Per-anchor NT-Xent (SimCLR) with negatives from the global batch.

    Anchors are the local rows of both views (`2n`); candidates are all `2N` gathered rows
    but the anchor itself; the positive is the other view of the same image:
    `loss_a = -log( exp(z_a . z_p / T) / sum_{c != a} exp(z_a . z_c / T) )`.
    Inputs must be L2-normalised. Returns `[2n]` losses (view 1 anchors first).
    """
    (z1_all, z2_all), offset = gather_from_replicas(z1, z2)
    n = tf.shape(z1)[0]
    total = tf.shape(z1_all)[0]
    anchors = tf.concat([z1, z2], 0)
    candidates = tf.concat([z1_all, z2_all], 0)
    logits = tf.matmul(anchors, candidates, transpose_b=True) / temperature
    local = offset + tf.range(n)
    self_index = tf.concat([local, local + total], 0)
    positive = tf.concat([local + total, local], 0)
    logits = logits - 1e9 * tf.one_hot(self_index, 2 * total, dtype=logits.dtype)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positive, logits=logits)


@keras.saving.register_keras_serializable(package="keras_contrast")
class SimCLRMixCoModel(keras.Model):
    """SimCLR trainer with MixCo's mix loss (MixCo's SimCLR base).

    ```
    loss = mean_a nt_xent_a(T)
           + mixco_weight * sum over (x, z') in [(x1, z2), (x2, z1)] of
               mean_i mixco(t_i, m_i . z'^T, T_mix) / 2
    ```

    with `m_i` the normalised projection of `lam_i x_i + (1 - lam_i) x_{i+B/2}` and `z'`
    the other view's normalised projections of the (local) batch: no queue, no momentum
    encoder. NT-Xent negatives come from the global batch under a strategy; the mix loss
    uses the replica's own batch, as the reference does per GPU. Logs `loss`,
    `contrastive_loss` and `mixco_loss`.

    Args:
        encoder: a built `keras.Model` mapping images to projections `[B, dim]`.
        temperature: NT-Xent temperature. Defaults to `0.5`.
        mixco: add the MixCo loss. Defaults to `True`.
        mixco_weight: weight of the MixCo loss. Defaults to `1.0`.
        mixco_temperature: MixCo temperature. Defaults to `0.5`.
        seed: seed of the mixing weights. Defaults to `None`.
        **kwargs: passed to `keras.Model`.

    Example:

    ```python
    model = SimCLRMixCoModel(encoder)
    model.compile(optimizer="adam")
    model.fit(tf.data.Dataset.from_tensor_slices({"query": v1, "key": v2}).batch(8))
    ```

    References:
        - [Chen et al., 2020 (SimCLR)](https://arxiv.org/abs/2002.05709).
        - [Kim et al., 2020 (MixCo)](https://arxiv.org/abs/2010.06300).
    """

    def __init__(
        self,
        encoder,
        temperature=0.5,
        mixco=True,
        mixco_weight=1.0,
        mixco_temperature=0.5,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check_positive("temperature", temperature)
        _check_positive("mixco_temperature", mixco_temperature)
        _check_positive("mixco_weight", mixco_weight, allow_zero=True)
        if not isinstance(encoder, keras.Model):
            raise ValueError(
                f"`encoder` must be a keras.Model. Received: encoder={type(encoder).__name__}"
            )
        self.encoder = encoder
        self.temperature = temperature
        self.mixco = bool(mixco)
        self.mixco_weight = mixco_weight
        self.mixco_temperature = mixco_temperature
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.contrastive_tracker = keras.metrics.Mean(name="contrastive_loss")
        self.mixco_tracker = keras.metrics.Mean(name="mixco_loss") if self.mixco else None
        self.built = encoder.built

    @property
    def metrics(self):
        trackers = [self.loss_tracker, self.contrastive_tracker, self.mixco_tracker]
        return [t for t in trackers if t is not None]

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            inputs = inputs["query"]
        return self.encoder(inputs, training=training)

    def _project(self, images, training=True):
        return tf.math.l2_normalize(
            tf.cast(self.encoder(images, training=training), "float32"), axis=-1
        )

    def compute_losses(self, x1, x2, training=True):
        """Loss terms of one step. `training=False` (what `evaluate` uses) runs the encoder
        in inference mode and mixes with a fixed seed, leaving the model's state as it was."""

        def project(images):
            return self._project(images, training)

        z1, z2 = project(x1), project(x2)
        terms = {"contrastive_loss": tf.reduce_mean(nt_xent_loss(z1, z2, self.temperature))}
        total = terms["contrastive_loss"]
        if self.mixco:
            mix_terms = []
            for images, other in ((x1, z2), (x2, z1)):
                seed = self.seed_generator.next() if training else _EVALUATION_SEED
                lam, mixed = mix_halves(images, seed)
                logits = tf.matmul(project(mixed), other, transpose_b=True)
                targets = mixco_targets(lam, tf.shape(other)[0])
                mix_terms.append(
                    tf.reduce_mean(mixco_loss(targets, logits, self.mixco_temperature)) / 2
                )
            terms["mixco_loss"] = tf.add_n(mix_terms)
            total = total + self.mixco_weight * terms["mixco_loss"]
        terms["loss"] = total
        return terms

    def _views(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if not isinstance(x, dict) or "query" not in x or "key" not in x:
            got = sorted(x) if isinstance(x, dict) else type(x).__name__
            raise ValueError(
                "SimCLRMixCoModel expects batches {'query': view_1, 'key': view_2}. "
                f"Received: {got}"
            )
        batch = x["query"].shape[0]
        if self.mixco and batch is not None and batch % 2:
            raise ValueError(f"`mixco=True` needs an even batch size. Received: batch={batch}")
        return x["query"], x["key"]

    def train_step(self, data):
        x1, x2 = self._views(data)
        trainable = self.trainable_variables
        with tf.GradientTape() as tape:
            terms = self.compute_losses(x1, x2)
            loss = terms["loss"] / tf.distribute.get_strategy().num_replicas_in_sync
            if hasattr(self.optimizer, "scale_loss"):
                loss = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(loss, trainable)
        self.optimizer.apply_gradients(zip(gradients, trainable))
        return self._update_metrics(terms, tf.shape(x1)[0])

    def test_step(self, data):
        x1, x2 = self._views(data)
        return self._update_metrics(self.compute_losses(x1, x2, training=False), tf.shape(x1)[0])

    def _update_metrics(self, terms, batch):
        for tracker in self.metrics:
            tracker.update_state(terms[tracker.name], sample_weight=batch)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "temperature": self.temperature,
            "mixco": self.mixco,
            "mixco_weight": self.mixco_weight,
            "mixco_temperature": self.mixco_temperature,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
