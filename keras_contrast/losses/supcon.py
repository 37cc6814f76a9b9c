"""Supervised contrastive loss (SupCon), and SimCLR's NT-Xent when no labels are given."""

import functools

import keras
import numpy as np
import tensorflow as tf

from keras_contrast import distribute

CONTRAST_MODES = ("all", "one")
SUMMATION_LOCATIONS = ("outside", "inside")
DENOMINATOR_MODES = ("all", "one_positive", "only_negatives")

# Stands in for -inf in masked log-sum-exps: exp() of it underflows to exactly 0 next to any
# real logit, yet a row made only of it stays finite, so its (discarded) gradient is not NaN.
_MASKED_LOGIT = -1e9

# `chunk_size="auto"`: global batches above this many samples are computed in blocks of
# `AUTO_CHUNK_SIZE` (at B = 4096 x 2 views: 0.08x the unchunked peak memory, BENCHMARKS.md).
AUTO_CHUNK_THRESHOLD = 2048
AUTO_CHUNK_SIZE = 512


def _validate_hyperparameters(
    temperature, base_temperature, contrast_mode, summation_location, denominator_mode,
    positives_cap, chunk_size=None,
):
    if not temperature > 0:
        raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
    if base_temperature is not None and not base_temperature > 0:
        raise ValueError(
            "`base_temperature` must be > 0 or None. "
            f"Received: base_temperature={base_temperature}"
        )
    if contrast_mode not in CONTRAST_MODES:
        raise ValueError(
            f"`contrast_mode` must be one of {CONTRAST_MODES}. "
            f"Received: contrast_mode={contrast_mode!r}"
        )
    if summation_location not in SUMMATION_LOCATIONS:
        raise ValueError(
            f"`summation_location` must be one of {SUMMATION_LOCATIONS}. "
            f"Received: summation_location={summation_location!r}"
        )
    if denominator_mode not in DENOMINATOR_MODES:
        raise ValueError(
            f"`denominator_mode` must be one of {DENOMINATOR_MODES}. "
            f"Received: denominator_mode={denominator_mode!r}"
        )
    if positives_cap is not None and (
        isinstance(positives_cap, bool) or not isinstance(positives_cap, int) or positives_cap < 0
    ):
        raise ValueError(
            "`positives_cap` must be None or an int >= 0. "
            f"Received: positives_cap={positives_cap!r}"
        )
    if chunk_size is not None and chunk_size != "auto" and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            "`chunk_size` must be None, 'auto' or an int >= 1. "
            f"Received: chunk_size={chunk_size!r}"
        )


def _same_class(labels, global_labels, batch_size):
    """Bool `[batch, global_batch]`: True where the local and global samples share a class."""
    if labels.shape.rank == 2 and labels.shape[-1] != 1:
        # One-hot (or multi-hot) labels: samples sharing any class are positives, as in the
        # TF reference's `labels @ labels^T`.
        labels = tf.cast(labels, tf.float32)
        global_labels = tf.cast(global_labels, tf.float32)
        return tf.matmul(labels, global_labels, transpose_b=True) > 0
    labels = tf.reshape(labels, [batch_size])
    global_labels = tf.reshape(global_labels, [-1])
    return tf.equal(labels[:, None], global_labels[None, :])


def _cap_positives(same_class, self_sample, num_views, positives_cap):
    """Keeps at most `positives_cap // num_views` other samples per anchor (first in order)."""
    others = tf.logical_and(same_class, tf.logical_not(self_sample))
    rank = tf.cumsum(tf.cast(others, tf.int32), axis=1)
    kept = tf.logical_and(others, rank <= positives_cap // num_views)
    return tf.logical_or(kept, self_sample)


def _validate_inputs(labels, features, contrast_mode):
    if features.shape.rank is None or features.shape.rank < 3:
        raise ValueError(
            "`features` must have rank >= 3, shaped [batch, views, ...feature dims]. "
            f"Received: features.shape={features.shape}"
        )
    num_views = features.shape[1]
    if num_views is None:
        raise ValueError(
            "`features` must have a static number of views (axis 1). "
            f"Received: features.shape={features.shape}"
        )
    if labels is None:
        if num_views == 1:
            raise ValueError(
                "Without `labels` every sample is its own class, so a single view gives no "
                "anchor a positive. Pass >= 2 views or labels. Received: "
                f"features.shape={features.shape} (views=1), labels=None, "
                f"contrast_mode={contrast_mode!r}"
            )
        return
    if labels.shape.rank not in (1, 2):
        raise ValueError(
            "`labels` must be int class ids [batch] or [batch, 1], or one-hot [batch, classes]. "
            f"Received: labels.shape={labels.shape}"
        )
    batch, label_batch = features.shape[0], labels.shape[0]
    if batch is not None and label_batch is not None and batch != label_batch:
        raise ValueError(
            "`labels` must have one entry per sample of `features`. Received: "
            f"labels.shape={labels.shape} for features.shape={features.shape}"
        )


def _check_hard_labels(labels):
    """One-hot / multi-hot `[batch, classes]` labels must hold only 0 and 1.

    Soft labels (label smoothing, mixing) have every entry > 0, so "shares a class" would make
    every pair of samples positives. Raises `ValueError` eagerly; inside `tf.function` the
    same check runs as a `tf.debugging` assertion.
    """
    if labels.shape.rank != 2 or labels.shape[-1] == 1:
        return labels
    binary = tf.reduce_all(tf.logical_or(tf.equal(labels, 0), tf.equal(labels, 1)))
    message = (
        "`labels` of shape [batch, classes] must be one-hot or multi-hot (only 0 and 1); "
        "soft labels (label smoothing, mixup) would make every pair of samples positives. "
        "Pass class ids (e.g. argmax) instead."
    )
    if tf.executing_eagerly():
        if not bool(binary):
            raise ValueError(f"{message} Received: labels with values {np.unique(labels)[:6]}")
        return labels
    with tf.control_dependencies([tf.debugging.assert_equal(binary, True, message=message)]):
        return tf.identity(labels)


def supcon_loss(
    labels,
    features,
    temperature=0.1,
    base_temperature=None,
    contrast_mode="all",
    summation_location="outside",
    denominator_mode="all",
    positives_cap=None,
    normalize=False,
    gather_across_replicas=True,
    chunk_size="auto",
):
    r"""Supervised contrastive loss per sample (SupCon; SimCLR's NT-Xent without labels).

    Every view of every sample is a feature vector `z`. For an anchor `i` with positives
    `P(i)` (the other views of its own sample and all views of samples with the same label)
    and the set `A(i)` of every view except the anchor itself, eq. 2 of the paper (L_out):

    ```
    L_i = -(T / T_base) / |P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / T)
                                                       / sum_{a in A(i)} exp(z_i . z_a / T) )
    ```

    The per-sample loss is the mean of `L_i` over the sample's anchor views: all views with
    `contrast_mode="all"`, only the first with `"one"`. An anchor with no positive
    contributes 0. With `labels=None` every sample is its own class, which is SimCLR's
    NT-Xent loss.

    Inside the replica context of any `tf.distribute` strategy (Mirrored, MultiWorkerMirrored,
    TPU) and with `gather_across_replicas=True`, features and labels are all-gathered, so each
    local anchor contrasts against the global batch; only the local anchors' losses are
    returned, and the gradient of the global loss flows back to every replica.

    The loss does **not** L2-normalise the features (pass `normalize=True`, or normalise in
    the projection head as usual). It is computed in float32 (float64 for float64 inputs), with
    a numerically stable (max-subtracted) log-sum-exp.

    Options from the TF reference, whose defaults reproduce L_out:
    - `summation_location="inside"`: eq. 3 (L_in), the mean over positives inside the log.
    - `denominator_mode`: `"all"` (every view but the anchor), `"one_positive"` (all
      negatives plus only the positive in the numerator) or `"only_negatives"`.
      With `"only_negatives"`, an anchor with no negative contributes 0.
    - `positives_cap`: at most this many positives besides the anchor's own other views
      (`positives_cap // views` other samples, the first in global batch order); positives
      left out are in neither the numerator nor the `"all"` denominator.

    Args:
        labels: int class ids `[batch]` or `[batch, 1]`, one-hot (or multi-hot: samples
            sharing any class are positives) `[batch, classes]`, or `None` for SimCLR.
        features: `[batch, views, dim]`; further axes after `views` are flattened.
        temperature: softmax temperature `T`, > 0. Defaults to `0.1`.
        base_temperature: `T_base` in the scale `T / T_base`; `None` means `temperature`
            (scale 1). Defaults to `None`.
        contrast_mode: `"all"` or `"one"`: which views are anchors. Defaults to `"all"`.
        summation_location: `"outside"` (eq. 2) or `"inside"` (eq. 3). Defaults to
            `"outside"`.
        denominator_mode: `"all"`, `"one_positive"` or `"only_negatives"`. Defaults to
            `"all"`.
        positives_cap: `None` (no cap) or an int >= 0. Defaults to `None`.
        normalize: L2-normalise the features first. Defaults to `False`.
        gather_across_replicas: contrast against the global batch inside a `tf.distribute`
            replica context. Defaults to `True`.
        chunk_size: `None` computes the `[anchors, views * global batch]` logits at once.
            An int >= 1 computes them for blocks of `chunk_size` local samples and, for the
            gradient, recomputes each block (a `tf.custom_gradient`), so memory grows as
            `chunk_size * anchor views * views * global batch` instead of with the batch
            squared; results agree with `None` to float32 round-off, for every option and
            under `tf.distribute`. Costs one extra forward pass. `"auto"` chunks (blocks of
            512) when the static global batch (local batch x replicas) exceeds 2,048
            samples, and otherwise computes at once (also when the batch size is only known
            at run time). Defaults to `"auto"`.

    Returns:
        tensor `[batch]`, the loss of each local sample: float32, or float64 for float64
        features.

    Example:

    >>> features = tf.math.l2_normalize(tf.random.normal([8, 2, 16]), axis=-1)
    >>> labels = tf.constant([0, 1, 0, 1, 2, 2, 3, 3])
    >>> supcon_loss(labels, features).shape
    TensorShape([8])

    References:
        - [Khosla et al., 2020. Supervised Contrastive Learning](https://arxiv.org/abs/2004.11362)
        - [Chen et al., 2020. SimCLR](https://arxiv.org/abs/2002.05709)
    """
    _validate_hyperparameters(
        temperature, base_temperature, contrast_mode, summation_location, denominator_mode,
        positives_cap, chunk_size,
    )
    features = tf.convert_to_tensor(features)
    labels = None if labels is None else tf.convert_to_tensor(labels)
    _validate_inputs(labels, features, contrast_mode)
    if labels is not None:
        labels = _check_hard_labels(labels)

    num_views = features.shape[1]
    if features.dtype != tf.float64:
        # float16 / bfloat16 (mixed precision) are promoted: the loss runs in float32.
        features = tf.cast(features, tf.float32)
    batch_size = tf.shape(features)[0]
    features = tf.reshape(features, [batch_size, num_views, -1])
    if normalize:
        features = tf.math.l2_normalize(features, axis=-1)

    tensors = [features] if labels is None else [features, labels]
    if gather_across_replicas:
        gathered, offset = distribute.gather_from_replicas(*tensors)
    else:
        gathered, offset = tensors, tf.constant(0, tf.int32)
    global_features = gathered[0]
    global_batch = tf.shape(global_features)[0]

    # [batch, global_batch]: where each local sample sits in the global batch.
    self_sample = tf.equal(
        (tf.range(batch_size) + offset)[:, None], tf.range(global_batch)[None, :]
    )
    if labels is None:
        same_class = self_sample
    else:
        same_class = _same_class(labels, gathered[1], batch_size)

    num_anchor_views = num_views if contrast_mode == "all" else 1
    # The contrast set grouped by view: rows (view, global sample).
    contrast = tf.reshape(tf.transpose(global_features, [1, 0, 2]), [num_views * global_batch, -1])
    anchor_losses = functools.partial(
        _anchor_losses,
        num_views=num_views,
        temperature=temperature,
        summation_location=summation_location,
        denominator_mode=denominator_mode,
        positives_cap=positives_cap,
    )
    anchor_features = features[:, :num_anchor_views]
    chunk_size = _resolve_chunk_size(chunk_size, features.shape[0], gather_across_replicas)
    if chunk_size is None or (features.shape[0] is not None and features.shape[0] <= chunk_size):
        # One block holds the whole (static) batch: no recomputation needed.
        anchor_loss = anchor_losses(anchor_features, contrast, same_class, self_sample)
    else:
        anchor_loss = _chunked_anchor_losses(
            anchor_losses, chunk_size, anchor_features, contrast, same_class, self_sample
        )
    scale = 1.0 if base_temperature is None else temperature / base_temperature
    return scale * anchor_loss


def _resolve_chunk_size(chunk_size, local_batch, gathered):
    """`chunk_size="auto"` -> `AUTO_CHUNK_SIZE` above `AUTO_CHUNK_THRESHOLD` samples, else None."""
    if chunk_size != "auto":
        return chunk_size
    if local_batch is None:
        return None
    replicas = distribute.num_replicas_in_sync() if gathered else 1
    return AUTO_CHUNK_SIZE if local_batch * replicas > AUTO_CHUNK_THRESHOLD else None


def _anchor_losses(
    anchor_features, contrast, same_class, self_sample, num_views, temperature,
    summation_location, denominator_mode, positives_cap,
):
    """Unscaled per-sample loss `[batch]` of a block of local samples.

    Args:
        anchor_features: `[batch, anchor views, dim]`, the block's anchor views.
        contrast: `[views * global batch, dim]`, every view of the global batch, view-major.
        same_class: bool `[batch, global batch]`, the block's rows of the class mask.
        self_sample: bool `[batch, global batch]`, True at each sample's own column.
    """
    batch_size = tf.shape(anchor_features)[0]
    num_anchor_views = anchor_features.shape[1]
    global_batch = tf.shape(same_class)[1]
    # Anchors grouped by view, rows (view, sample); 1/T folded into the [rows, dim] side.
    anchors = tf.transpose(anchor_features, [1, 0, 2]) / temperature
    logits = tf.matmul(
        tf.reshape(anchors, [num_anchor_views * batch_size, -1]), contrast, transpose_b=True
    )
    # [anchor view, sample, contrast view, global sample]: the masks broadcast against this.
    logits = tf.reshape(logits, [num_anchor_views, batch_size, num_views, global_batch])

    same_view = tf.equal(
        tf.range(num_anchor_views)[:, None, None, None], tf.range(num_views)[None, None, :, None]
    )
    is_self = tf.logical_and(same_view, self_sample[None, :, None, :])
    negatives = tf.logical_not(same_class)[None, :, None, :]
    if positives_cap is not None:
        same_class = _cap_positives(same_class, self_sample, num_views, positives_cap)

    def positives():
        return tf.logical_and(same_class[None, :, None, :], tf.logical_not(is_self))

    # Positives are every view of the same-class samples except the anchor itself, so their
    # count and their logits' sum come from [batch, global batch] products, not [rows, N]
    # masked sums: sum_p z_a . z_p = z_a . (same_class @ sum_views(z) - z_a).
    same_class_float = tf.cast(same_class, contrast.dtype)
    self_positive = tf.cast(
        tf.reduce_any(tf.logical_and(same_class, self_sample), axis=1), contrast.dtype
    )
    num_positives = num_views * tf.reduce_sum(same_class_float, axis=1) - self_positive
    num_positives = tf.broadcast_to(num_positives, [num_anchor_views, batch_size])
    axes = [2, 3]

    def masked_logsumexp(mask):
        return tf.reduce_logsumexp(tf.where(mask, logits, _MASKED_LOGIT), axis=axes)

    anchor_features_by_view = tf.transpose(anchor_features, [1, 0, 2])

    def positive_logits_sum():
        summed_views = tf.reduce_sum(
            tf.reshape(contrast, [num_views, global_batch, -1]), axis=0
        )
        positives_sum = tf.matmul(same_class_float, summed_views)[None]
        positives_sum -= self_positive[None, :, None] * anchor_features_by_view
        return tf.reduce_sum(anchors * positives_sum, axis=-1)

    valid = num_positives > 0
    if denominator_mode == "one_positive":
        log_negatives = masked_logsumexp(negatives)[..., None, None]
        log_probs = logits - tf.math.reduce_logsumexp(
            tf.stack([logits, tf.broadcast_to(log_negatives, tf.shape(logits))]), axis=0
        )
        if summation_location == "outside":
            log_prob_pos = tf.reduce_sum(tf.where(positives(), log_probs, 0.0), axis=axes)
            mean_log_prob = log_prob_pos / tf.maximum(num_positives, 1.0)
        else:
            mean_log_prob = tf.reduce_logsumexp(
                tf.where(positives(), log_probs, _MASKED_LOGIT), axis=axes
            ) - tf.math.log(tf.maximum(num_positives, 1.0))
    else:
        if denominator_mode == "all" and positives_cap is None:
            # Every view but the anchor itself: positives and negatives cover the rest.
            denominator_mask = tf.logical_not(is_self)
        elif denominator_mode == "all":
            denominator_mask = tf.logical_or(positives(), negatives)
        else:
            denominator_mask = tf.broadcast_to(negatives, tf.shape(logits))
            valid = tf.logical_and(valid, tf.reduce_any(denominator_mask, axis=axes))
        log_denominator = masked_logsumexp(denominator_mask)
        if summation_location == "outside":
            mean_log_prob = (
                positive_logits_sum() / tf.maximum(num_positives, 1.0) - log_denominator
            )
        else:
            mean_log_prob = (
                masked_logsumexp(positives())
                - tf.math.log(tf.maximum(num_positives, 1.0))
                - log_denominator
            )

    anchor_loss = tf.where(valid, -mean_log_prob, 0.0)
    return tf.reduce_mean(anchor_loss, axis=0)


def _chunked_anchor_losses(
    anchor_losses, chunk_size, anchor_features, contrast, same_class, self_sample
):
    """`anchor_losses` over blocks of `chunk_size` local samples, recomputed for the gradient.

    The forward pass keeps only the `[batch]` losses; the backward pass recomputes each
    block's `[chunk * anchor views, views * global batch]` logits to take its gradient, so
    peak memory is O(chunk_size * views * global batch) instead of O(batch * ...). The batch
    is padded to a multiple of `chunk_size` with rows whose masks are all False (their loss
    and gradient are 0), so every block has a static shape (XLA-friendly).
    """

    @tf.custom_gradient
    def chunked(anchor_features, contrast, same_class, self_sample):
        batch_size = tf.shape(anchor_features)[0]
        num_chunks = (batch_size + chunk_size - 1) // chunk_size
        padding = num_chunks * chunk_size - batch_size

        def blocks(tensor):
            tensor = tf.pad(tensor, [[0, padding]] + [[0, 0]] * (tensor.shape.rank - 1))
            shape = tf.concat([[num_chunks, chunk_size], tf.shape(tensor)[1:]], 0)
            return tf.reshape(tensor, shape)

        anchor_blocks = blocks(anchor_features)
        same_blocks = blocks(same_class)
        self_blocks = blocks(self_sample)

        def forward(i, losses):
            return i + 1, losses.write(
                i, anchor_losses(anchor_blocks[i], contrast, same_blocks[i], self_blocks[i])
            )

        _, losses = tf.while_loop(
            lambda i, _: i < num_chunks,
            forward,
            (
                tf.constant(0),
                tf.TensorArray(contrast.dtype, size=num_chunks, element_shape=[chunk_size]),
            ),
            parallel_iterations=1,
        )
        loss = tf.reshape(losses.stack(), [-1])[:batch_size]

        def grad(upstream):
            upstream_blocks = blocks(upstream)

            def backward(i, contrast_grad, anchor_grads):
                block = anchor_blocks[i]
                with tf.GradientTape() as tape:
                    tape.watch([block, contrast])
                    block_loss = anchor_losses(block, contrast, same_blocks[i], self_blocks[i])
                block_grad, block_contrast_grad = tape.gradient(
                    block_loss, [block, contrast], output_gradients=upstream_blocks[i]
                )
                return i + 1, contrast_grad + block_contrast_grad, anchor_grads.write(i, block_grad)

            _, contrast_grad, anchor_grads = tf.while_loop(
                lambda i, *_: i < num_chunks,
                backward,
                (
                    tf.constant(0),
                    tf.zeros_like(contrast),
                    tf.TensorArray(
                        contrast.dtype, size=num_chunks, element_shape=anchor_blocks.shape[1:]
                    ),
                ),
                parallel_iterations=1,
            )
            anchor_grad = tf.reshape(
                anchor_grads.stack(), tf.concat([[-1], tf.shape(anchor_features)[1:]], 0)
            )[:batch_size]
            return anchor_grad, contrast_grad, None, None

        return loss, grad

    return chunked(anchor_features, contrast, same_class, self_sample)


@keras.saving.register_keras_serializable(package="keras_contrast")
class SupConLoss(keras.losses.Loss):
    """Supervised contrastive loss (SupCon), or SimCLR's NT-Xent when `y_true` is `None`.

    Call it as `loss(y_true=labels, y_pred=features)`, with `features` shaped
    `[batch, views, dim]` (L2-normalised by the projection head, or pass `normalize=True`)
    and `labels` int `[batch]`/`[batch, 1]`, one-hot `[batch, classes]` or `None`. Inside a
    `tf.distribute` replica context (`model.fit` under `MirroredStrategy`,
    `MultiWorkerMirroredStrategy` or `TPUStrategy`) each replica's anchors contrast against
    the global batch of all replicas; see `supcon_loss` for the formula and every option.

    For SimCLR, call `loss(None, features)`. `model.compile(loss=SupConLoss())` needs labels
    from the dataset; for label-free training use `keras_contrast.models.SupConModel`, which
    passes `None`.

    Args:
        temperature: softmax temperature, > 0. Defaults to `0.1`.
        base_temperature: the loss is scaled by `temperature / base_temperature`; `None`
            means no scaling. Defaults to `None`.
        contrast_mode: `"all"` (every view is an anchor) or `"one"` (the first view only).
            Defaults to `"all"`.
        summation_location: `"outside"` (L_out, eq. 2) or `"inside"` (L_in, eq. 3).
            Defaults to `"outside"`.
        denominator_mode: `"all"`, `"one_positive"` or `"only_negatives"`. Defaults to
            `"all"`.
        positives_cap: `None` or the maximum number of positives besides the anchor's own
            views. Defaults to `None`.
        normalize: L2-normalise the features inside the loss. Defaults to `False`.
        gather_across_replicas: use the global batch as contrast set under a strategy.
            Defaults to `True`.
        chunk_size: `None`, `"auto"` (blocks of 512 above a global batch of 2,048), or
            compute the logits in blocks of this many samples and recompute them for the
            gradient, to bound memory at large batches. Defaults to `"auto"`.
        reduction: as for any Keras loss. Defaults to `"sum_over_batch_size"`.
        name: Defaults to `"supcon_loss"`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=keras_contrast.losses.SupConLoss(temperature=0.1))
    model.fit(views_and_labels_dataset)  # model outputs [batch, views, dim]
    ```

    References:
        - [Khosla et al., 2020. Supervised Contrastive Learning](https://arxiv.org/abs/2004.11362)
    """

    def __init__(
        self,
        temperature=0.1,
        base_temperature=None,
        contrast_mode="all",
        summation_location="outside",
        denominator_mode="all",
        positives_cap=None,
        normalize=False,
        gather_across_replicas=True,
        chunk_size="auto",
        reduction="sum_over_batch_size",
        name="supcon_loss",
        dtype=None,
    ):
        _validate_hyperparameters(
            temperature, base_temperature, contrast_mode, summation_location, denominator_mode,
            positives_cap, chunk_size,
        )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.temperature = temperature
        self.base_temperature = base_temperature
        self.contrast_mode = contrast_mode
        self.summation_location = summation_location
        self.denominator_mode = denominator_mode
        self.positives_cap = positives_cap
        self.normalize = normalize
        self.gather_across_replicas = gather_across_replicas
        self.chunk_size = chunk_size

    def __call__(self, y_true, y_pred, sample_weight=None):
        if y_true is None:
            # Keras' base __call__ converts y_true to a tensor; SimCLR has no labels, so
            # route `None` around that conversion.
            return super().__call__(_NO_LABELS, y_pred, sample_weight=sample_weight)
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        labels = None if _is_no_labels(y_true) else y_true
        return supcon_loss(
            labels,
            y_pred,
            temperature=self.temperature,
            base_temperature=self.base_temperature,
            contrast_mode=self.contrast_mode,
            summation_location=self.summation_location,
            denominator_mode=self.denominator_mode,
            positives_cap=self.positives_cap,
            normalize=self.normalize,
            gather_across_replicas=self.gather_across_replicas,
            chunk_size=self.chunk_size,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "temperature": self.temperature,
                "base_temperature": self.base_temperature,
                "contrast_mode": self.contrast_mode,
                "summation_location": self.summation_location,
                "denominator_mode": self.denominator_mode,
                "positives_cap": self.positives_cap,
                "normalize": self.normalize,
                "gather_across_replicas": self.gather_across_replicas,
                "chunk_size": self.chunk_size,
            }
        )
        return config


# A zero-size placeholder that survives Keras' tensor conversion of `y_true`: the loss reads
# it back as "no labels". Its shape [0, 0] cannot be a real label tensor for a non-empty batch.
_NO_LABELS = np.zeros((0, 0), dtype="float32")


def _is_no_labels(y_true):
    return y_true.shape.rank == 2 and y_true.shape[0] == 0 and y_true.shape[1] == 0
