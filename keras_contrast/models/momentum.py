"""Momentum (EMA) copies of an encoder, and per-replica variable updates.

MoCo's key encoder is an exponential moving average of the query encoder:
`theta_k <- m * theta_k + (1 - m) * theta_q`, applied after each optimizer step and never
trained by gradients.
"""

import keras
import tensorflow as tf


def update_per_replica(updates):
    """Applies variable updates on every replica with that replica's own arguments.

    Each update is `(variable, fn, args)`; `fn(tf_variable, *args)` runs once per replica
    device on the local copy of `variable` with the local values of `args` (no
    cross-replica reduction). Outside a strategy this is a plain call. Inside the replica
    function of a `tf.distribute` strategy (where Keras runs `train_step`), one
    `merge_call` applies all updates, the way Keras' optimizers apply gradients. Use it for
    state that every replica computes identically (momentum encoders, queues): mirrored
    variables with `aggregation="none"` cannot be assigned in a replica context directly.

    Args:
        updates: a list of `(variable, fn, args)` with `variable` a `keras.Variable` or a
            `tf.Variable`, `fn` a function of the variable and the `args`, `args` a tuple of
            tensors.
    """
    updates = [
        (v.value if isinstance(v, keras.Variable) else v, fn, tuple(args))
        for v, fn, args in updates
    ]
    if not tf.distribute.has_strategy():
        for var, fn, args in updates:
            fn(var, *args)
        return
    flat_args = [a for _, _, args in updates for a in args]

    def merge_fn(strategy, *merged_args):
        position = 0
        for var, fn, args in updates:
            local = merged_args[position : position + len(args)]
            position += len(args)
            strategy.extended.update(var, fn, args=tuple(local), group=False)

    if tf.distribute.in_cross_replica_context():
        merge_fn(tf.distribute.get_strategy(), *flat_args)
    else:
        tf.distribute.get_replica_context().merge_call(merge_fn, args=tuple(flat_args))


def clone_momentum_encoder(encoder, name=None):
    """Clones `encoder` into a momentum (key) encoder with the same weights.

    The clone comes from `keras.models.clone_model` (Functional and Sequential models), or
    from `from_config(get_config())` for subclassed models that implement `get_config`. All
    its variables are marked non-trainable so no optimizer ever updates them, but its layers
    stay `trainable`: Keras runs frozen `BatchNormalization` layers in inference mode, while
    MoCo's key encoder uses batch statistics (`training=True`), as in the reference.

    Args:
        encoder: a built `keras.Model` (encoder plus projection head).
        name: name of the clone. Defaults to `encoder.name + "_momentum"`.

    Returns:
        The clone, built, with `encoder`'s weights copied in.
    """
    if not isinstance(encoder, keras.Model):
        raise ValueError(
            f"`encoder` must be a keras.Model. Received: encoder={type(encoder).__name__}"
        )
    if not encoder.built:
        raise ValueError(
            "`encoder` must be built (call it once or give it an Input). "
            f"Received: encoder={encoder.name} (not built)"
        )
    try:
        clone = keras.models.clone_model(encoder)
    except Exception:  # Subclassed models: rebuild from config.
        clone = encoder.__class__.from_config(encoder.get_config())
    if not clone.built:
        input_shape = tf.nest.map_structure(lambda t: tuple(t.shape), encoder.inputs)
        clone.build(input_shape[0] if len(input_shape) == 1 else input_shape)
    clone.name = name or f"{encoder.name}_momentum"
    return _copy_and_freeze(encoder, clone, "encoder")


def _copy_and_freeze(source, clone, argument):
    """Copies `source`'s weights into `clone` and marks every clone variable non-trainable."""
    if len(clone.weights) != len(source.weights):
        raise ValueError(
            f"Cloning `{argument}` gave {len(clone.weights)} weights instead of "
            f"{len(source.weights)}. Received: {argument}={source.name}"
        )
    clone.set_weights(source.get_weights())
    for variable in clone.weights:
        variable.trainable = False
    return clone


def momentum_pairs(online, momentum_copy):
    """Pairs each trainable weight of `online` with its copy in `momentum_copy`.

    Weights are matched by position in `.weights` (the order `clone_model` preserves);
    shapes are checked. Non-trainable weights (e.g. batch-norm moving statistics) are not
    paired: the momentum copy keeps its own, as MoCo's key encoder keeps its own BN buffers.
    """
    pairs = []
    for source, target in zip(online.weights, momentum_copy.weights):
        if tuple(source.shape) != tuple(target.shape):
            raise ValueError(
                "`momentum_copy` does not mirror `online`: weight "
                f"{source.path} has shape {tuple(source.shape)} but {target.path} has "
                f"shape {tuple(target.shape)}."
            )
        if source.trainable:
            pairs.append((source, target))
    return pairs


def momentum_update(pairs, momentum):
    """EMA update `target <- momentum * target + (1 - momentum) * source` for each pair.

    Call it after the optimizer step. Under a `tf.distribute` strategy each replica updates
    its own copy from its own (mirrored, hence identical) source values: no communication,
    identical results on every replica.

    Args:
        pairs: `(source, target)` variables, e.g. from `momentum_pairs`.
        momentum: the EMA momentum `m` in `[0, 1]` (a float or scalar tensor).
    """

    def ema(target, source, m):
        m = tf.cast(m, target.dtype)
        return target.assign(m * target + (1.0 - m) * tf.cast(source, target.dtype))

    momentum = tf.convert_to_tensor(momentum, tf.float32)
    update_per_replica(
        [(target, ema, (tf.convert_to_tensor(source), momentum)) for source, target in pairs]
    )


def clone_momentum_layer(layer, input_shape, name=None):
    """Clones a layer or model into a non-trainable momentum copy with the same weights.

    Models go through `clone_momentum_encoder`; other layers (e.g. a `ProjectionHead`) are
    rebuilt from `get_config()` and built on `input_shape`.

    Args:
        layer: a built `keras.layers.Layer` or `keras.Model`.
        input_shape: the shape to build a layer clone on, e.g. `(None, features)`.
        name: name of the clone. Defaults to `layer.name + "_momentum"`.

    Returns:
        The clone, built, with `layer`'s weights, every variable non-trainable.
    """
    if isinstance(layer, keras.Model):
        return clone_momentum_encoder(layer, name=name)
    config = dict(layer.get_config())
    config["name"] = name or f"{layer.name}_momentum"
    clone = layer.__class__.from_config(config)
    clone.build(input_shape)
    return _copy_and_freeze(layer, clone, "layer")
