"""CLSA's distribution divergence minimisation (DDM) loss."""

import keras
import tensorflow as tf

from keras_contrast.losses.info_nce import (
    _as_float32,
    _check_rank,
    _check_temperature,
    _promote,
)


def ddm_loss(weak_similarities, strong_similarities, temperature=0.2):
    """Per-query distribution divergence loss between a weak and a strong view (CLSA).

    Row `i` holds query `i`'s similarities to the same keys (its positive key(s) first, then
    the negatives, e.g. MoCo's queue), computed once from the weakly augmented query (`w`)
    and once from the strongly augmented query (`s`). The weak view's distribution over the
    keys supervises the strong view's:

    ```
    p_weak   = softmax(stop_gradient(w_i) / T)
    loss_i   = -sum_j p_weak_j * log_softmax(s_i / T)_j
    ```

    The weak side never receives gradient; `log_softmax` is used rather than
    `log(softmax(.))` for stability. Computed in float32 for float16/bfloat16
    inputs (float64 stays float64).

    Args:
        weak_similarities: `[batch, num_keys]` similarities of the weak views.
        strong_similarities: `[batch, num_keys]` similarities of the strong views, same
            keys in the same order.
        temperature: softmax temperature `T` > 0 of both sides. Defaults to `0.2` (CLSA).

    Returns:
        A `[batch]` tensor (float32, or float64 for float64 inputs): the loss of each query.

    Example:

    ```python
    weak = tf.random.uniform([8, 65], -1, 1)
    strong = tf.random.uniform([8, 65], -1, 1)
    loss = ddm_loss(weak, strong, temperature=0.2)  # shape [8]
    ```

    References:
        - [Wang & Qi, 2021. Contrastive Learning with Stronger Augmentations
          (CLSA)](https://arxiv.org/abs/2104.07713).
    """
    _check_temperature(temperature)
    weak = _as_float32(weak_similarities, "weak_similarities")
    strong = _as_float32(strong_similarities, "strong_similarities")
    weak, strong = _promote(weak, strong)
    _check_rank(weak, 2, "weak_similarities", "[batch, num_keys]")
    _check_rank(strong, 2, "strong_similarities", "[batch, num_keys]")
    if not weak.shape.is_compatible_with(strong.shape):
        raise ValueError(
            "`weak_similarities` and `strong_similarities` must have the same shape "
            f"[batch, num_keys]. Received: weak_similarities.shape={tuple(weak.shape)}, "
            f"strong_similarities.shape={tuple(strong.shape)}"
        )
    p_weak = tf.nn.softmax(tf.stop_gradient(weak) / temperature, axis=-1)
    log_p_strong = tf.nn.log_softmax(strong / temperature, axis=-1)
    return -tf.reduce_sum(p_weak * log_p_strong, axis=-1)


@keras.saving.register_keras_serializable(package="keras_contrast")
class DistributionDivergenceLoss(keras.losses.Loss):
    """CLSA's distribution divergence (DDM) loss as a `keras.losses.Loss`.

    `y_true` holds the weak views' similarities `[batch, num_keys]` (the targets, never
    differentiated) and `y_pred` the strong views' similarities to the same keys:

    ```
    loss_i = -sum_j softmax(stop_gradient(y_true_i) / T)_j * log_softmax(y_pred_i / T)_j
    ```

    Args:
        temperature: softmax temperature `T` > 0. Defaults to `0.2`.
        reduction: as for any `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"distribution_divergence"`.

    Example:

    ```python
    loss = DistributionDivergenceLoss(temperature=0.2)
    loss(tf.random.uniform([8, 65], -1, 1), tf.random.uniform([8, 65], -1, 1))
    ```

    References:
        - [Wang & Qi, 2021](https://arxiv.org/abs/2104.07713).
    """

    def __init__(
        self,
        temperature=0.2,
        reduction="sum_over_batch_size",
        name="distribution_divergence",
        **kwargs,
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)
        _check_temperature(temperature)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        return ddm_loss(y_true, y_pred, self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config
