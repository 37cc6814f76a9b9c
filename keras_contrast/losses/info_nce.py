"""InfoNCE (MoCo) loss: the positive key against the negatives, per query."""

import keras
import tensorflow as tf


def _check_temperature(temperature):
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(
            f"`temperature` must be a number > 0. Received: temperature={temperature!r}"
        )
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")


def _as_float32(x, name):
    x = tf.convert_to_tensor(x)
    if not (x.dtype.is_floating):
        raise ValueError(
            f"`{name}` must be a floating tensor. Received: {name}.dtype={x.dtype.name}"
        )
    if x.dtype in (tf.float16, tf.bfloat16):
        x = tf.cast(x, tf.float32)
    return x


def _promote(*tensors):
    """Casts tensors to one compute dtype: float64 if any is float64, else float32."""
    dtype = tf.float64 if any(t.dtype == tf.float64 for t in tensors) else tf.float32
    return [tf.cast(t, dtype) for t in tensors]


def _check_rank(x, rank, name, expected):
    if x.shape.rank is not None and x.shape.rank != rank:
        raise ValueError(
            f"`{name}` must have rank {rank} ({expected}). "
            f"Received: {name}.shape={tuple(x.shape)}"
        )


def info_nce_loss(query, positive_key, negatives=None, temperature=0.2):
    """Per-query InfoNCE loss, as in MoCo.

    Each query `q_i` is classified against its positive key `k_i` and a set of negatives.
    With a negatives bank `n_1..n_K` (MoCo's queue) shared by all queries:

    ```
    loss_i = -log( exp(q_i . k_i / T) / (exp(q_i . k_i / T) + sum_j exp(q_i . n_j / T)) )
    ```

    With `negatives=None` the other queries' positive keys in the batch are the negatives
    (`loss_i = -log softmax_j(q_i . k_j / T)[i]`). Features are used as given: pass
    L2-normalised features for cosine similarities (MoCo normalises both). Computed in
    float32 for float16/bfloat16 inputs (float64 stays float64).

    Args:
        query: `[batch, dim]` query features.
        positive_key: `[batch, dim]` key features; row `i` is the positive of query `i`.
            It is not stop-gradiented here (MoCo's keys come from a momentum encoder, which
            has no gradient anyway).
        negatives: `[num_negatives, dim]` negative keys shared by all queries, or `None` for
            in-batch negatives. Defaults to `None`.
        temperature: softmax temperature `T` > 0. Defaults to `0.2` (MoCo-v2).

    Returns:
        A `[batch]` tensor (float32, or float64 for float64 inputs): the loss of each query.

    Example:

    ```python
    q = tf.math.l2_normalize(tf.random.normal([8, 16]), -1)
    k = tf.math.l2_normalize(tf.random.normal([8, 16]), -1)
    queue = tf.math.l2_normalize(tf.random.normal([64, 16]), -1)
    loss = info_nce_loss(q, k, queue, temperature=0.2)  # shape [8]
    ```

    References:
        - [van den Oord et al., 2018](https://arxiv.org/abs/1807.03748) (InfoNCE).
        - [He et al., 2020](https://arxiv.org/abs/1911.05722) (MoCo),
          [Chen et al., 2020](https://arxiv.org/abs/2003.04297) (MoCo-v2).
    """
    _check_temperature(temperature)
    query = _as_float32(query, "query")
    positive_key = _as_float32(positive_key, "positive_key")
    negatives = None if negatives is None else _as_float32(negatives, "negatives")
    if negatives is None:
        query, positive_key = _promote(query, positive_key)
    else:
        query, positive_key, negatives = _promote(query, positive_key, negatives)
    _check_rank(query, 2, "query", "[batch, dim]")
    _check_rank(positive_key, 2, "positive_key", "[batch, dim]")
    if not query.shape.is_compatible_with(positive_key.shape):
        raise ValueError(
            "`query` and `positive_key` must have the same shape [batch, dim]. "
            f"Received: query.shape={tuple(query.shape)}, "
            f"positive_key.shape={tuple(positive_key.shape)}"
        )
    if negatives is None:
        logits = tf.matmul(query, positive_key, transpose_b=True) / temperature
        labels = tf.range(tf.shape(query)[0])
    else:
        _check_rank(negatives, 2, "negatives", "[num_negatives, dim]")
        if (
            negatives.shape[-1] is not None
            and query.shape[-1] is not None
            and negatives.shape[-1] != query.shape[-1]
        ):
            raise ValueError(
                "`negatives` must have the feature size of `query`. Received: "
                f"negatives.shape={tuple(negatives.shape)}, query.shape={tuple(query.shape)}"
            )
        positive = tf.reduce_sum(query * positive_key, axis=-1, keepdims=True)
        negative = tf.matmul(query, negatives, transpose_b=True)
        logits = tf.concat([positive, negative], axis=-1) / temperature
        labels = tf.zeros(tf.shape(query)[:1], tf.int32)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


@keras.saving.register_keras_serializable(package="keras_contrast")
class InfoNCELoss(keras.losses.Loss):
    """InfoNCE loss with in-batch negatives, as a `keras.losses.Loss`.

    `y_pred` holds two views `[batch, 2, dim]`: view 0 the queries, view 1 their positive
    keys; every other key of the batch is a negative:

    ```
    loss_i = -log( exp(q_i . k_i / T) / sum_j exp(q_i . k_j / T) )
    ```

    `y_true` is ignored (pass anything, e.g. zeros). For a bank of negatives (MoCo's queue)
    call `info_nce_loss(query, key, negatives)` directly; `MoCoModel` does that.

    Args:
        temperature: softmax temperature `T` > 0. Defaults to `0.2`.
        reduction: as for any `keras.losses.Loss`. Defaults to `"sum_over_batch_size"`.
        name: loss name. Defaults to `"info_nce"`.

    Example:

    ```python
    features = tf.math.l2_normalize(tf.random.normal([8, 2, 16]), -1)
    InfoNCELoss(temperature=0.2)(tf.zeros([8]), features)
    ```

    References:
        - [van den Oord et al., 2018](https://arxiv.org/abs/1807.03748),
          [He et al., 2020](https://arxiv.org/abs/1911.05722).
    """

    def __init__(
        self, temperature=0.2, reduction="sum_over_batch_size", name="info_nce", **kwargs
    ):
        super().__init__(reduction=reduction, name=name, **kwargs)
        _check_temperature(temperature)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        y_pred = tf.convert_to_tensor(y_pred)
        if y_pred.shape.rank != 3 or (y_pred.shape[1] is not None and y_pred.shape[1] != 2):
            raise ValueError(
                "`y_pred` must have shape [batch, 2, dim] (query view, key view). "
                f"Received: y_pred.shape={tuple(y_pred.shape)}"
            )
        return info_nce_loss(y_pred[:, 0], y_pred[:, 1], None, self.temperature)

    def get_config(self):
        config = super().get_config()
        config.update({"temperature": self.temperature})
        return config
