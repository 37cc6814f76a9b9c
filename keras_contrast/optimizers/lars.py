"""LARS: layer-wise adaptive rate scaling for large-batch contrastive pretraining."""

import re

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_contrast")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling optimizer (SGD with momentum and a trust ratio).

    For each variable `w` with gradient `g`, learning rate `lr`, momentum `m`, weight decay
    `wd` and trust coefficient `eta`:

    ```
    g = g + wd * w                                   (unless excluded from weight decay)
    trust = eta * ||w|| / ||g||  if ||w|| > 0 and ||g|| > 0  else 1
                                                     (1 if excluded from layer adaptation)
    v = m * v + trust * lr * g
    w = w - (m * v + trust * lr * g)  if nesterov  else  w - v
    ```

    This is the "classic momentum" form of google-research simclr / supcon, where the trust
    ratio scales the learning rate inside the momentum. By default every variable of rank
    <= 1 (biases and BatchNorm scale/offset) is excluded from both weight decay and
    adaptation, as the references do by name; give regular expressions (searched in
    `variable.path`, e.g. `"bias"`, `"batch_normalization"`) to choose otherwise. Keras'
    decoupled `weight_decay` of the base class is not applied: weight decay is the L2 term
    above. For warmup + cosine decay pass
    `keras.optimizers.schedules.CosineDecay(0.0, decay_steps, warmup_target=peak_lr,
    warmup_steps=warmup_steps)` as `learning_rate`.

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
            Defaults to `0.1`.
        momentum: momentum coefficient in [0, 1). Defaults to `0.9`.
        weight_decay: L2 coefficient added to the gradient. Defaults to `0.0`.
        trust_coefficient: `eta` of the trust ratio. Defaults to `0.001`.
        nesterov: use Nesterov momentum. Defaults to `False`.
        exclude_from_weight_decay: `None` (exclude variables of rank <= 1) or a list of
            regular expressions matched against `variable.path`. Defaults to `None`.
        exclude_from_layer_adaptation: the same for the trust ratio; `None` follows
            `exclude_from_weight_decay`. Defaults to `None`.
        name: the optimizer name. Defaults to `"lars"`.
        **kwargs: other `keras.optimizers.Optimizer` arguments (`clipnorm`,
            `global_clipnorm`, `loss_scale_factor`, `gradient_accumulation_steps`, ...).

    Returns:
        A `keras.optimizers.Optimizer`.

    Example:

    ```python
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=1000, warmup_target=0.3 * batch_size / 256, warmup_steps=100)
    optimizer = LARS(schedule, momentum=0.9, weight_decay=1e-6)
    model.compile(optimizer=optimizer)
    ```

    References:
        - [You et al., Large Batch Training of Convolutional Networks, 2017](
          https://arxiv.org/abs/1708.03888)
        - [Chen et al., A Simple Framework for Contrastive Learning, 2020](
          https://arxiv.org/abs/2002.05709)
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        nesterov=False,
        exclude_from_weight_decay=None,
        exclude_from_layer_adaptation=None,
        name="lars",
        **kwargs,
    ):
        if kwargs.get("use_ema"):
            raise ValueError("LARS does not support `use_ema`. Received: use_ema=True")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum}")
        if weight_decay is None or weight_decay < 0:
            raise ValueError(
                f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}"
            )
        if trust_coefficient <= 0:
            raise ValueError(
                f"`trust_coefficient` must be > 0. Received: trust_coefficient={trust_coefficient}"
            )
        for arg, value in (
            ("exclude_from_weight_decay", exclude_from_weight_decay),
            ("exclude_from_layer_adaptation", exclude_from_layer_adaptation),
        ):
            if value is not None and (
                isinstance(value, str) or not all(isinstance(p, str) for p in value)
            ):
                raise ValueError(
                    f"`{arg}` must be None or a list of regular expressions. "
                    f"Received: {arg}={value!r}"
                )
        self.momentum = momentum
        # Stored under the base class's attribute so its config carries it; the base class's
        # decoupled decay is disabled in `_apply_weight_decay` below.
        self.weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.nesterov = nesterov
        self.exclude_from_weight_decay_patterns = (
            None if exclude_from_weight_decay is None else list(exclude_from_weight_decay)
        )
        self.exclude_from_layer_adaptation = (
            None if exclude_from_layer_adaptation is None else list(exclude_from_layer_adaptation)
        )

    def _excluded(self, variable, patterns):
        if patterns is None:
            return len(variable.shape) <= 1
        return any(re.search(p, variable.path) for p in patterns)

    def _decays(self, variable):
        return self.weight_decay > 0 and not self._excluded(
            variable, self.exclude_from_weight_decay_patterns
        )

    def _adapts(self, variable):
        patterns = self.exclude_from_layer_adaptation
        if patterns is None:
            patterns = self.exclude_from_weight_decay_patterns
        return not self._excluded(variable, patterns)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # Decided once from the Keras variables (their `path`); `update_step` may receive the
        # backend variable, so it looks the decision up by index.
        self._decay_flags = [self._decays(v) for v in variables]
        self._adapt_flags = [self._adapts(v) for v in variables]

    def _apply_weight_decay(self, variables):
        # Weight decay is part of the LARS gradient (see `update_step`), not decoupled.
        return

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        if self._decay_flags[index]:
            gradient = gradient + ops.cast(self.weight_decay, variable.dtype) * variable
        scaled_lr = learning_rate
        if self._adapt_flags[index]:
            w_norm = ops.sqrt(ops.sum(ops.square(variable)))
            g_norm = ops.sqrt(ops.sum(ops.square(gradient)))
            trust = ops.where(
                ops.greater(w_norm, 0.0),
                ops.where(
                    ops.greater(g_norm, 0.0),
                    ops.cast(self.trust_coefficient, variable.dtype)
                    * w_norm
                    / ops.maximum(g_norm, 1e-30),
                    ops.ones_like(w_norm),
                ),
                ops.ones_like(w_norm),
            )
            scaled_lr = learning_rate * trust
        momentum = ops.cast(self.momentum, variable.dtype)
        velocity = self.momentums[index]
        step = scaled_lr * gradient
        self.assign(velocity, momentum * velocity + step)
        if self.nesterov:
            self.assign_sub(variable, momentum * velocity + step)
        else:
            self.assign_sub(variable, velocity)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "trust_coefficient": self.trust_coefficient,
                "nesterov": self.nesterov,
                "exclude_from_weight_decay": self.exclude_from_weight_decay_patterns,
                "exclude_from_layer_adaptation": self.exclude_from_layer_adaptation,
            }
        )
        return config
