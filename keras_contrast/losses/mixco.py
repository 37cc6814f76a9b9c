"""MixCo: soft-target contrastive loss for mixed images (semi-positives)."""

import keras
import numpy as np
import tensorflow as tf

from keras_contrast.losses.info_nce import (
    _as_float32,
    _check_rank,
    _check_temperature,
    _promote,
)


def mixco_targets(mix_weights, num_keys):
    """Soft targets of MixCo's mixed queries.

    The batch of `B` queries is split in halves; mixed image `i` is
    `lam_i * x_i + (1 - lam_i) * x_{i + B/2}`. Its target over `num_keys` keys (the batch's
    `B` keys first, in batch order, then any negatives) puts `lam_i` on key `i`,
    `1 - lam_i` on key `i + B/2` and zero elsewhere.

    Args:
        mix_weights: `[B/2]` mixing weights `lam` in `[0, 1]` (any shape with `B/2` elements,
            e.g. `[B/2, 1, 1, 1]` as used to mix images).
        num_keys: number of keys (columns) `>= B`, e.g. `B + queue_size`: an int, or a
            scalar integer tensor (when the batch size is only known at run time; then it
            is not validated).

    Returns:
        A `[B/2, num_keys]` tensor (float32, or float64 for float64 weights) whose rows
        sum to 1.

    Example:

    ```python
    lam = tf.constant([0.3, 0.9])
    mixco_targets(lam, num_keys=6)
    # [[0.3, 0.0, 0.7, 0.0, 0.0, 0.0],
    #  [0.0, 0.9, 0.0, 0.1, 0.0, 0.0]]
    ```

    References:
        - [Kim et al., 2020. MixCo: Mix-up Contrastive Learning for Visual
          Representation](https://arxiv.org/abs/2010.06300).
    """
    if tf.is_tensor(num_keys):
        if num_keys.shape.rank != 0 or not num_keys.dtype.is_integer:
            raise ValueError(
                "`num_keys` must be an int or a scalar integer tensor. "
                f"Received: num_keys={num_keys!r}"
            )
    elif isinstance(num_keys, bool) or not isinstance(num_keys, (int, np.integer)):
        raise ValueError(f"`num_keys` must be an int. Received: num_keys={num_keys!r}")
    lam = tf.reshape(_promote(_as_float32(mix_weights, "mix_weights"))[0], [-1])
    half = lam.shape[0]
    if half is not None and not tf.is_tensor(num_keys):
        if half == 0:
            raise ValueError("`mix_weights` must not be empty. Received: mix_weights.shape=(0,)")
        if num_keys < 2 * half:
            raise ValueError(
                f"`num_keys` must be >= the batch size B = 2 * len(mix_weights) = {2 * half}. "
                f"Received: num_keys={num_keys}"
            )
    if tf.executing_eagerly():
        values = lam.numpy()
        if np.any(values < 0) or np.any(values > 1) or np.any(np.isnan(values)):
            raise ValueError(
                f"`mix_weights` must lie in [0, 1]. Received: mix_weights={values}"
            )
    else:  # inside tf.function / tf.data: the same check at run time
        in_range = tf.reduce_all((lam >= 0) & (lam <= 1))  # False for NaN too
        check = tf.debugging.assert_equal(
            in_range, True, message="mixco_targets: `mix_weights` must lie in [0, 1]"
        )
        with tf.control_dependencies([check]):
            lam = tf.identity(lam)
    rows = tf.range(tf.shape(lam)[0])
    half_t = tf.shape(lam)[0]
    return lam[:, None] * tf.one_hot(rows, num_keys, dtype=lam.dtype) + (1.0 - lam)[:, None] * tf.one_hot(
        rows + half_t, num_keys, dtype=lam.dtype
    )


def mixco_loss(mix_targets, mixed_logits, temperature=0.05):
    """Per-query soft-target cross-entropy of MixCo's mixed queries.

    ```
    loss_i = -sum_j t_ij * log_softmax(z_i / T)_j
    ```

    with `t` the soft targets (from `mixco_targets`) and `z_i` the similarities of mixed
    query `i` to the keys. Computed in float32 for float16/bfloat16
    inputs (float64 stays float64).

    Args:
        mix_targets: `[B/2, num_keys]` soft targets; each row must sum to 1 (checked when
            running eagerly).
        mixed_logits: `[B/2, num_keys]` similarities of the mixed queries to the keys, before
            the temperature.
        temperature: softmax temperature `T` > 0. Defaults to `0.05` (MixCo on MoCo).

    Returns:
        A `[B/2]` tensor (float32, or float64 for float64 inputs): the loss of each mixed query.

    Example:

    ```python
    lam = tf.random.uniform([4])
    targets = mixco_targets(lam, num_keys=8 + 32)
    logits = tf.random.uniform([4, 40], -1, 1)
    loss = mixco_loss(targets, logits, temperature=0.05)  # shape [4]
    ```

    References:
        - [Kim et al., 2020](https://arxiv.org/abs/2010.06300).
    """
    _check_temperature(temperature)
    targets = _as_float32(mix_targets, "mix_targets")
    logits = _as_float32(mixed_logits, "mixed_logits")
    targets, logits = _promote(targets, logits)
    _check_rank(targets, 2, "mix_targets", "[B/2, num_keys]")
    _check_rank(logits, 2, "mixed_logits", "[B/2, num_keys]")
    if not targets.shape.is_compatible_with(logits.shape):
        raise ValueError(
            "`mix_targets` and `mixed_logits` must have the same shape [B/2, num_keys]. "
            f"Received: mix_targets.shape={tuple(targets.shape)}, "
            f"mixed_logits.shape={tuple(logits.shape)}"
        )
    if tf.executing_eagerly():
        sums = tf.reduce_sum(targets, axis=-1).numpy()
        if not np.allclose(sums, 1.0, atol=1e-3):
            raise ValueError(
                "Each row of `mix_targets` must sum to 1. "
                f"Received: mix_targets row sums={sums}"
            )
    targets = tf.stop_gradient(targets)
    return -tf.reduce_sum(targets * tf.nn.log_softmax(logits / temperature, axis=-1), axis=-1)


@keras.saving.register_keras_serializable(package="keras_contrast")
class MixCoLoss(keras.losses.Loss):
    """MixCo's soft-target cross-entropy as a `keras.losses.Loss`.

    `y_true` holds the soft targets `[B/2, num_keys]` (see `mixco_targets`), `y_pred` the
    mixed queries' similarities to the keys:

    ```
    loss_i = -sum_j y_true_ij * log_softmax(y_pred_i / T)_j
    ```

    Args:
        temperature: softmax temperature `T` > 0. Defaults to `0.05`.
        reduction: as for any `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"mixco"`.

    Example:

    ```python
    targets = mixco_targets(tf.constant([0.2, 0.6]), num_keys=10)
    MixCoLoss(temperature=0.05)(targets, tf.random.uniform([2, 10], -1, 1))
    ```

    References:
        - [Kim et al., 2020](https://arxiv.org/abs/2010.06300).
    """

    def __init__(self, temperature=0.05, reduction="sum_over_batch_size", name="mixco", **kwargs):
        super().__init__(reduction=reduction, name=name, **kwargs)
        _check_temperature(temperature)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        return mixco_loss(y_true, y_pred, self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config
