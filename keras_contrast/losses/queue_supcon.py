"""SupCon against a memory of labelled keys (batch keys + queue), per anchor."""

import keras
import tensorflow as tf

from keras_contrast.losses.info_nce import _as_float32, _check_rank, _promote, _check_temperature


def queue_supcon_loss(
    labels, anchors, key_labels, keys, temperature=0.1, base_temperature=None
):
    """Per-anchor supervised contrastive loss against a set of labelled keys (L_out).

    The memory-efficient SupCon of Khosla et al. (ImageNet with a memory of 8,192 keys): each
    anchor `a_i` (an online projection) contrasts against every key `k_j` (momentum-encoder
    projections of the batch, then the queue); its positives `P(i)` are all keys with its
    label:

    ```
    L_i = -(T / T_base) / |P(i)| * sum_{p in P(i)} log( exp(a_i . k_p / T)
                                                       / sum_j exp(a_i . k_j / T) )
    ```

    The anchor is not among the keys, so no key is excluded from the denominator. An anchor
    with no positive contributes 0 (never NaN). Keys with label `-1` (a queue's initial
    random keys) are negatives of every anchor. Features are used as given (pass
    L2-normalised ones). Computed in float32 (float64 for float64 inputs).

    Args:
        labels: int `[batch]` labels of the anchors (>= 0).
        anchors: `[batch, dim]` anchor features.
        key_labels: int `[num_keys]` labels of the keys.
        keys: `[num_keys, dim]` key features.
        temperature: softmax temperature `T` > 0. Defaults to `0.1`.
        base_temperature: the loss is scaled by `T / base_temperature`; `None` means no
            scaling. Defaults to `None`.

    Returns:
        A `[batch]` tensor: each anchor's loss.

    Example:

    ```python
    loss = queue_supcon_loss(labels, queries, queue_labels, queue_keys, temperature=0.1)
    ```

    References:
        - [Khosla et al., 2020. Supervised Contrastive Learning](
          https://arxiv.org/abs/2004.11362), ImageNet memory experiment.
    """
    _check_temperature(temperature)
    if base_temperature is not None:
        _check_temperature(base_temperature)
    anchors = _as_float32(anchors, "anchors")
    keys = _as_float32(keys, "keys")
    anchors, keys = _promote(anchors, keys)
    _check_rank(anchors, 2, "anchors", "[batch, dim]")
    _check_rank(keys, 2, "keys", "[num_keys, dim]")
    labels = tf.convert_to_tensor(labels)
    key_labels = tf.convert_to_tensor(key_labels)
    for name, value in (("labels", labels), ("key_labels", key_labels)):
        if not value.dtype.is_integer:
            raise ValueError(
                f"`{name}` must be int class ids. Received: {name}.dtype={value.dtype.name}"
            )
        _check_rank(value, 1, name, "[n] int class ids")
    logits = tf.matmul(anchors, keys, transpose_b=True) / tf.constant(temperature, anchors.dtype)
    log_prob = logits - tf.reduce_logsumexp(logits, axis=1, keepdims=True)
    positives = tf.cast(
        tf.equal(tf.cast(labels, tf.int64)[:, None], tf.cast(key_labels, tf.int64)[None, :]),
        anchors.dtype,
    )
    count = tf.reduce_sum(positives, axis=1)
    loss = -tf.math.divide_no_nan(tf.reduce_sum(positives * log_prob, axis=1), count)
    if base_temperature is not None:
        loss = loss * (temperature / base_temperature)
    return loss
