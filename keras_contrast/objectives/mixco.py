"""MixCo add-on: mixed images as semi-positives with soft targets over the key set."""

import keras
import tensorflow as tf

from keras_contrast.losses.mixco import mixco_loss
from keras_contrast.models.trainer import check_number
from keras_contrast.objectives.objective import Objective


def mix_halves(images, seed):
    """MixCo's mixing: `lam_i x_i + (1 - lam_i) x_{i + B/2}`, `lam ~ Beta(1, 1) = U(0, 1)`.

    What `keras_contrast.layers.MixCoMixing` does in a pipeline, here inside the step.
    Under a strategy each replica folds its replica id into `seed`, so replicas draw
    different weights.

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


@keras.saving.register_keras_serializable(package="keras_contrast")
class MixCo(Objective):
    """MixCo: mixed queries are semi-positives of both sources' keys, with soft targets.

    For every mixable contrast pair of the base (weak images `x`, key set `K`, positive
    index `pos_i` of each anchor), image `i < B/2` is mixed with image `i + B/2`,
    `m_i = lam_i x_i + (1 - lam_i) x_{i+B/2}` with `lam_i ~ U(0, 1)`, and encoded on the
    anchors' online path (`embed`); its target puts `lam_i` on key `pos_i` and
    `1 - lam_i` on key `pos_{i+B/2}`:

    ```
    mix = mean over mixable pairs of mean_i ( -sum_j t_ij * log_softmax(m_i . K^T / T)_j )
    ```

    The key set is the base's (see `keras_contrast.objectives.CLSA`): batch keys and queue
    for MoCo (as MixCo's MoCo reference), the other view's batch for SimCLR and SupCon (both
    directions, as MixCo's SimCLR reference), the target projections for BYOL. The batch
    size must be even. Logged by `fit` as `mixco_loss`.

    Args:
        weight: weight of the MixCo term. Defaults to `1.0`.
        temperature: softmax temperature of the mixed queries. Defaults to `0.05` (MixCo on
            MoCo-v2).

    Example:

    ```python
    model = keras_contrast.models.SimCLRModel(encoder, add_ons=[MixCo(temperature=0.2)])
    ```

    References:
        - [Kim et al., 2020. MixCo: Mix-up Contrastive Learning for Visual Representation](
          https://arxiv.org/abs/2010.06300)
    """

    loss_name = "mixco_loss"

    def __init__(self, weight=1.0, temperature=0.05):
        super().__init__(weight)
        check_number("temperature", temperature)
        self.temperature = temperature

    def validate(self, trainer, views):
        batch = views.key.shape[0]
        if batch is not None and (batch < 2 or batch % 2):
            raise ValueError(
                f"The MixCo add-on needs an even batch size >= 2 (per replica). Received: "
                f"batch={batch}"
            )

    def compute(self, trainer, outputs, views, training):
        pairs = [pair for pair in outputs.pairs if pair.mixable]
        terms = []
        for pair in pairs:
            lam, mixed = mix_halves(pair.images, trainer.next_seed(training))
            logits = tf.matmul(outputs.embed(mixed, training), pair.keys, transpose_b=True)
            half = tf.shape(lam)[0]
            num_keys = tf.shape(pair.keys)[0]
            positive = tf.cast(pair.positive, tf.int32)
            targets = lam[:, None] * tf.one_hot(positive[:half], num_keys) + (1.0 - lam)[
                :, None
            ] * tf.one_hot(positive[half : 2 * half], num_keys)
            terms.append(tf.reduce_mean(mixco_loss(targets, logits, self.temperature)))
        return tf.add_n(terms) / len(terms)

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config
