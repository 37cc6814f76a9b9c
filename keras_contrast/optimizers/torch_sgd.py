"""SGD with PyTorch's semantics: coupled L2 weight decay and a momentum buffer of gradients."""

import re

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_contrast")
class TorchSGD(keras.optimizers.Optimizer):
    """SGD as `torch.optim.SGD` computes it: L2 weight decay added to the gradient.

    The reference implementations of SupCon (HobbitLong/SupContrast), MoCo, CLSA and MixCo
    train with `torch.optim.SGD(params, lr, momentum=0.9, weight_decay=wd)`. For each
    variable `w` with gradient `g`, learning rate `lr` (of this step), momentum `m` and weight
    decay `wd`:

    ```
    g = g + wd * w                      (coupled L2, unless excluded)
    b = m * b + g                       (b = 0 before the first step)
    w = w - lr * (g + m * b)  if nesterov  else  w - lr * b
    ```

    This differs from `keras.optimizers.SGD(momentum=m, weight_decay=wd)` in two ways that
    change results: Keras' `weight_decay` is decoupled (`w -= lr * wd * w` outside the
    momentum), which at `m = 0.9` is about 10x weaker than the coupled L2 term accumulated
    in the momentum buffer; and Keras folds the learning rate into its buffer (`b = m * b -
    lr * g`), so under a schedule the two differ by the buffer's stale learning rates.
    By default every variable is decayed, as `torch.optim.SGD` does for all parameters (the
    references decay biases and BatchNorm parameters too).

    Args:
        learning_rate: a float or a `keras.optimizers.schedules.LearningRateSchedule`.
            Defaults to `0.1`.
        momentum: momentum `m` in `[0, 1)`. Defaults to `0.9`.
        weight_decay: coupled L2 coefficient `wd` >= 0. Defaults to `0.0`.
        nesterov: Nesterov momentum, as torch computes it. Defaults to `False`.
        exclude_from_weight_decay: `None` (decay every variable) or regular expressions
            searched in `variable.path` (e.g. `["bias", "batch_normalization"]`). Defaults
            to `None`.
        name: Defaults to `"torch_sgd"`.
        **kwargs: other `keras.optimizers.Optimizer` arguments (`clipnorm`,
            `global_clipnorm`, `loss_scale_factor`, ...).

    Example:

    ```python
    schedule = keras.optimizers.schedules.CosineDecay(0.5, decay_steps=total_steps)
    model.compile(optimizer=TorchSGD(schedule, momentum=0.9, weight_decay=1e-4))
    ```

    References:
        - `torch.optim.SGD` (https://pytorch.org/docs/stable/generated/torch.optim.SGD.html)
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        nesterov=False,
        exclude_from_weight_decay=None,
        name="torch_sgd",
        **kwargs,
    ):
        for unsupported in ("use_ema", "weight_decay_decoupled"):
            if kwargs.get(unsupported):
                raise ValueError(
                    f"TorchSGD does not support `{unsupported}`. Received: {unsupported}=True"
                )
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        for arg, value, upper in (("momentum", momentum, 1.0), ("weight_decay", weight_decay, None)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok = ok and value == value and value >= 0 and value != float("inf")
            ok = ok and (upper is None or value < upper)
            if not ok:
                bound = "in [0, 1)" if upper is not None else "a finite number >= 0"
                raise ValueError(f"`{arg}` must be {bound}. Received: {arg}={value!r}")
        if nesterov and momentum == 0:
            raise ValueError(
                "Nesterov momentum needs a momentum (as in torch). Received: nesterov=True "
                "needs momentum > 0, momentum=0"
            )
        if exclude_from_weight_decay is not None and (
            isinstance(exclude_from_weight_decay, str)
            or not all(isinstance(p, str) for p in exclude_from_weight_decay)
        ):
            raise ValueError(
                "`exclude_from_weight_decay` must be None or a list of regular expressions. "
                f"Received: exclude_from_weight_decay={exclude_from_weight_decay!r}"
            )
        self.momentum = momentum
        # Stored under the base class's attribute so its config carries it; the base class's
        # decoupled decay is disabled in `_apply_weight_decay`.
        self.weight_decay = weight_decay
        self.nesterov = bool(nesterov)
        self.exclude_from_weight_decay_patterns = (
            None if exclude_from_weight_decay is None else list(exclude_from_weight_decay)
        )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        patterns = self.exclude_from_weight_decay_patterns or []
        self._decay_flags = [
            self.weight_decay > 0 and not any(re.search(p, v.path) for p in patterns)
            for v in variables
        ]

    def _apply_weight_decay(self, variables):
        # Weight decay is the coupled L2 term of `update_step`, not Keras' decoupled decay.
        return

    def update_step(self, gradient, variable, learning_rate):
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        index = self._get_variable_index(variable)
        if self._decay_flags[index]:
            gradient = gradient + ops.cast(self.weight_decay, variable.dtype) * variable
        if self.momentum == 0:
            self.assign_sub(variable, learning_rate * gradient)
            return
        momentum = ops.cast(self.momentum, variable.dtype)
        buffer = self.momentums[index]
        self.assign(buffer, momentum * buffer + gradient)
        direction = gradient + momentum * buffer if self.nesterov else buffer
        self.assign_sub(variable, learning_rate * direction)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "nesterov": self.nesterov,
                "exclude_from_weight_decay": self.exclude_from_weight_decay_patterns,
            }
        )
        return config
