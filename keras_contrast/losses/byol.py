"""BYOL's loss: normalised mean squared error between online predictions and targets."""

import keras
import tensorflow as tf

from keras_contrast.losses.info_nce import _as_float32, _check_rank, _promote


def byol_loss(targets, predictions):
    """Per-sample BYOL loss, the squared distance of L2-normalised vectors.

    ```
    loss_i = || p_i / ||p_i|| - z_i / ||z_i|| ||^2 = 2 - 2 * cos(p_i, z_i)
    ```

    with `p_i` the online network's prediction of one view and `z_i` the target network's
    projection of the other view. The targets get no gradient (BYOL's stop-gradient).
    BYOL's symmetric loss is `byol_loss(z2, p1) + byol_loss(z1, p2)`. Computed in float32
    for float16/bfloat16 inputs (float64 stays float64).

    Args:
        targets: `[batch, dim]` target projections `z` (not differentiated).
        predictions: `[batch, dim]` online predictions `p`.

    Returns:
        A `[batch]` tensor: each sample's loss, in `[0, 4]`.

    Example:

    ```python
    loss = byol_loss(tf.random.normal([8, 256]), tf.random.normal([8, 256]))  # [8]
    ```

    References:
        - [Grill et al., 2020. Bootstrap Your Own Latent](https://arxiv.org/abs/2006.07733)
    """
    targets = _as_float32(targets, "targets")
    predictions = _as_float32(predictions, "predictions")
    targets, predictions = _promote(targets, predictions)
    _check_rank(targets, 2, "targets", "[batch, dim]")
    _check_rank(predictions, 2, "predictions", "[batch, dim]")
    if not targets.shape.is_compatible_with(predictions.shape):
        raise ValueError(
            "`targets` and `predictions` must have the same shape [batch, dim]. Received: "
            f"targets.shape={tuple(targets.shape)}, predictions.shape={tuple(predictions.shape)}"
        )
    z = tf.math.l2_normalize(tf.stop_gradient(targets), axis=-1)
    p = tf.math.l2_normalize(predictions, axis=-1)
    return 2.0 - 2.0 * tf.reduce_sum(p * z, axis=-1)


@keras.saving.register_keras_serializable(package="keras_contrast")
class BYOLLoss(keras.losses.Loss):
    """BYOL's normalised MSE, `loss(y_true=targets, y_pred=predictions)`; see `byol_loss`.

    Args:
        reduction: as for any Keras loss. Defaults to `"sum_over_batch_size"`.
        name: Defaults to `"byol_loss"`.

    Example:

    ```python
    loss = BYOLLoss()(target_projections, online_predictions)  # scalar
    ```
    """

    def __init__(self, reduction="sum_over_batch_size", name="byol_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return byol_loss(y_true, y_pred)
