"""`Objective`: the base of the add-on objectives of `ContrastiveTrainer`."""

from keras_contrast.models.trainer import check_number


class Objective:
    """An add-on loss term of a `keras_contrast.models.ContrastiveTrainer`.

    The trainer calls `validate(trainer, views)` on every parsed batch (at trace time) and
    `compute(trainer, outputs, views, training)` inside the gradient tape; the returned
    scalar (a per-replica mean) enters the total loss times `weight` and is logged by `fit`
    under `loss_name`. `outputs` is the base's `BaseOutputs`: its `pairs` (anchors, key set,
    positive indices) and `embed` (the online path of the anchors) are all an add-on needs,
    so one add-on works on every base.

    Subclasses set `loss_name` and implement `compute`; `get_config()` returns every
    constructor argument.

    Args:
        weight: weight of the term in the total loss, a finite number >= 0. Defaults to
            `1.0`.
    """

    loss_name = None

    def __init__(self, weight=1.0):
        check_number("weight", weight, minimum=0.0, inclusive=True)
        self.weight = weight

    def validate(self, trainer, views):
        """Raises a `ValueError` when the batch cannot feed this objective."""

    def compute(self, trainer, outputs, views, training):
        raise NotImplementedError

    def get_config(self):
        return {"weight": self.weight}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
