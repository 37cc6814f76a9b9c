"""`ContrastiveTrainer`: the one base of every self-supervised / contrastive trainer.

A trainer is a `keras.Model` whose `fit` takes batches of views. The base owns everything
that does not depend on the method: parsing the batch, the gradient step (replica and
mixed-precision loss scaling), the add-on objectives (`keras_contrast.objectives`), the
online linear probe, the collapse monitor, the metric trackers, the after-step hook
(momentum update, queue) and serialisation. A method (`SimCLRModel`, `SupConModel`,
`MoCoModel`, `BYOLModel`) writes only `compute_base()`: how it encodes the views, its loss
term, and the contrast pairs it offers to add-ons.

Batch format (one for every trainer), as produced by `keras_contrast.data.ViewMaker`:

```python
{
    "query": images,    # [B, H, W, C] weak view, or a tuple of crops (multi-crop, MoCo)
    "key": images,      # [B, H, W, C] the other weak view
    "strong": images,   # optional: strong view or tuple of crops (the CLSA add-on)
    "labels": labels,   # optional: int [B] (SupCon; the online probe)
}
```

or `(that dict, labels)`, or `(views [B, V, H, W, C], labels)` / `views` (today's SupCon
format: view 0 is the query, view 1 the key, further views are extra weak views).
"""

import dataclasses
import typing

import keras
import tensorflow as tf

from keras_contrast.models.heads import ProjectionHead
from keras_contrast.models.momentum import (
    clone_momentum_encoder,
    clone_momentum_layer,
    momentum_pairs,
    momentum_update,
)

# Stateless seed of the random draws (mixing weights, shuffles) in `evaluate()`: evaluation
# is repeatable and leaves the seed generator that training draws from untouched.
EVALUATION_SEED = (20_210_415, 7)


def num_replicas():
    """Replicas in sync of the current strategy (1 outside a strategy)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def scale_loss_for_distribution(loss):
    """Divides a per-replica mean loss by the number of replicas, as Keras' losses do.

    The optimizer sums gradients over replicas, so a replica contributes its local mean
    divided by the number of replicas; the sum is then the global-batch mean's gradient.
    """
    replicas = num_replicas()
    return loss * tf.cast(1.0 / replicas, loss.dtype) if replicas > 1 else loss


def unscale_loss_for_distribution(loss):
    """Inverse of `scale_loss_for_distribution` (Keras losses return the scaled value)."""
    replicas = num_replicas()
    return loss * tf.cast(replicas, loss.dtype) if replicas > 1 else loss


def l2_normalize(x):
    """L2-normalises the rows of `x` in float32 (also under mixed precision)."""
    return tf.math.l2_normalize(tf.cast(x, "float32"), axis=-1)


def feature_dim(encoder):
    """The size of `encoder`'s output features, or `None` when it cannot be read."""
    try:
        return int(encoder.outputs[0].shape[-1])
    except (AttributeError, ValueError, TypeError, IndexError):
        pass
    value = getattr(encoder, "feature_dim", None)
    return value if isinstance(value, int) else None


def check_number(name, value, minimum=0.0, inclusive=False, maximum=None):
    """Raises a `ValueError` naming `name` unless `value` is a real number in range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and value == value and abs(value) != float("inf")
    ok = ok and (value >= minimum if inclusive else value > minimum)
    ok = ok and (maximum is None or value <= maximum)
    if not ok:
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        if maximum is not None:
            bound += f" and <= {maximum}"
        raise ValueError(f"`{name}` must be a finite number {bound}. Received: {name}={value!r}")


def compile_as_saved(model, config):
    """`model.compile` with a saved compile config, minus the losses and metrics it owns.

    For models whose `compile` builds their optimizers (so that their saved state loads) and
    refuses a `loss`.
    """
    config = keras.saving.deserialize_keras_object(config)
    config = {k: v for k, v in config.items() if v is not None or k == "jit_compile"}
    for unused in ("loss", "loss_weights", "metrics", "weighted_metrics"):
        config.pop(unused, None)
    model.compile(**config)


def check_int(name, value, minimum=1, allow_none=False):
    """Raises a `ValueError` naming `name` unless `value` is an int (not a bool) >= minimum."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = f"an int >= {minimum}" + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` must be {bound}. Received: {name}={value!r}")


@dataclasses.dataclass
class ContrastPair:
    """One anchor set of a base method and the key set it contrasts against.

    Add-ons (`keras_contrast.objectives`) compute their terms on these pairs, so that they
    work on every base: CLSA compares similarity distributions over `keys`, MixCo builds
    soft targets on the `positive` indices.

    Attributes:
        images: the weak view `[B, H, W, C]` the anchors were computed from (MixCo mixes
            it).
        anchors: `[B, d]` L2-normalised online outputs (with gradient).
        keys: `[M, d]` L2-normalised key set (e.g. the gathered batch keys and the queue).
        positive: int32 `[B]`, the row of `keys` that is each anchor's positive.
        weight: the pair's weight in the base loss (`0.5` for each of the two directions
            of a symmetric loss that averages them); add-ons weigh their per-pair terms
            the same way.
        mixable: whether MixCo mixes `images` (MoCo mixes only its first query crop).
    """

    images: typing.Any
    anchors: typing.Any
    keys: typing.Any
    positive: typing.Any
    weight: float = 1.0
    mixable: bool = True


@dataclasses.dataclass
class BaseOutputs:
    """What `compute_base` returns.

    Attributes:
        terms: the base's loss terms `{name: scalar}` (per-replica means, float32); the
            trainer's `base_loss_name` entry enters the total loss, others are only logged.
        pairs: the `ContrastPair`s offered to add-ons (may be empty when there are none).
        embed: `embed(images, training)` -> `[n, d]` L2-normalised online outputs on the
            same path as the anchors (add-ons encode strong and mixed views with it).
        features: encoder features `[B, F]` of the query view (the probe's input).
        projections: L2-normalised projections `[B, d]` of the query view (`z_std`).
        state: anything the after-step hook needs (keys to enqueue, ...).
    """

    terms: dict
    pairs: list
    embed: typing.Callable
    features: typing.Any
    projections: typing.Any
    state: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Views:
    """A parsed batch: query crops, key view, strong crops, extra weak views, labels."""

    query: list
    key: typing.Any
    strong: list
    extra: list
    labels: typing.Any

    @property
    def batch_size(self):
        return tf.shape(self.key)[0]


class _SeedState(keras.layers.Layer):
    """Holds the trainer's `SeedGenerator` so that its state is saved with the model.

    Keras saves a layer's own variables but not those of a bare `SeedGenerator`; without
    this, a resumed run (`BackupAndRestore`) or a loaded model would draw different
    shuffles and mixing weights than an uninterrupted one.
    """

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.generator = keras.random.SeedGenerator(seed, name="generator")
        self.built = True

    def save_own_variables(self, store):
        store["0"] = self.generator.state.numpy()

    def load_own_variables(self, store):
        self.generator.state.assign(store["0"])


def _as_list(views):
    if views is None:
        return []
    return list(views) if isinstance(views, (list, tuple)) else [views]


_BATCH_KEYS = ("query", "key", "strong", "labels")
_FORMAT = (
    "{'query': images or (crops), 'key': images, 'strong': images or (crops) (CLSA), "
    "'labels': int [B] (optional)}, optionally as (that dict, labels), or (views [B, V, H, "
    "W, C], labels) / views"
)


class ContrastiveTrainer(keras.Model):
    """Base of every trainer: the step, the add-ons, the probe, metrics and serialisation.

    Subclasses implement `compute_base(views, training)` returning `BaseOutputs`, and may
    override `after_step(outputs)` (called after each optimizer step, e.g. momentum update
    and enqueue), `validate_views(views)` and `default_head(feature_dim)`. Everything else
    is shared:

    ```
    loss = base_term + sum over add-ons a of a.weight * a.term    (+ regularisation losses)
    ```

    computed per replica and divided by the number of replicas (Keras' scaling: summed
    gradients equal the global-batch gradient), scaled by the optimizer for mixed precision
    (`LossScaleOptimizer`, which `compile` adds under `mixed_float16`).

    Monitoring that every trainer gets: with `num_classes`, an online linear probe (a
    `Dense(num_classes)` on stop-gradient encoder features of the query view, trained in the
    same step by its own optimizer, `compile(probe_optimizer=...)`, Adam 1e-3 by default)
    logged as `probe_loss` / `probe_accuracy` by `fit` and `evaluate` whenever the batch has
    labels; and the collapse monitor `z_std`, the mean over dimensions of the batch standard
    deviation of the L2-normalised projections (`1 / sqrt(d)` for well spread projections,
    0 for collapse; under a strategy, the mean over replicas of each replica's spread). `evaluate()` also takes plain `(images [B, H, W, C], labels)` batches,
    for which it reports only the probe's metrics, so a validation split can be passed to
    `fit(validation_data=...)`.

    Calling the trainer on images `[B, H, W, C]` returns `{"embeddings": encoder features,
    "projections": L2-normalised projections}` and, with a probe, `"probabilities"`.

    Args:
        encoder: a built Keras model mapping images to features `[B, F]` (e.g.
            `keras_contrast.models.ResNet`); `model.encoder` is what linear evaluation and
            export use.
        head: the projection head (a Keras layer). Defaults to `default_head(F)`.
        add_ons: objectives from `keras_contrast.objectives` (`CLSA`, `MixCo`), at most one
            of each kind. Defaults to `()`.
        num_classes: classes of the online linear probe; `None` for no probe. Defaults to
            `None`.
        seed: seed of the trainer's random draws (shuffles, mixing weights, queue
            initialisation). Defaults to `None`.
        **kwargs: passed to `keras.Model` (e.g. `name`).
    """

    base_loss_name = "contrastive_loss"

    def __init__(self, encoder, head=None, add_ons=(), num_classes=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(encoder, keras.Model) or not encoder.built:
            raise ValueError(
                "`encoder` must be a built keras.Model (give it an Input or call it once), "
                f"e.g. keras_contrast.models.ResNet. Received: encoder={encoder!r}"
            )
        dim = feature_dim(encoder)
        if dim is None:
            raise ValueError(
                "Could not read the feature size of `encoder` from `encoder.outputs`. "
                f"Received: encoder={encoder.name!r}"
            )
        if head is not None and not isinstance(head, keras.layers.Layer):
            raise ValueError(f"`head` must be a Keras layer or None. Received: head={head!r}")
        check_int("num_classes", num_classes, minimum=2, allow_none=True)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        add_ons = list(add_ons or ())
        names = []
        for add_on in add_ons:
            if not hasattr(add_on, "compute") or not hasattr(add_on, "loss_name"):
                raise ValueError(
                    "`add_ons` must be objectives from keras_contrast.objectives (CLSA, "
                    f"MixCo). Received: {add_on!r}"
                )
            if add_on.loss_name in names:
                raise ValueError(
                    f"`add_ons` has two objectives logging {add_on.loss_name!r}; use each "
                    f"kind once. Received: add_ons={add_ons!r}"
                )
            names.append(add_on.loss_name)
        self.encoder = encoder
        self.feature_dim = dim
        self.head = head if head is not None else self.default_head(dim)
        if not self.head.built:
            self.head.build((None, dim))
        self.projection_dim = int(self.head.compute_output_shape((None, dim))[-1])
        self.add_ons = add_ons
        self.num_classes = num_classes
        self.seed = seed
        self.seed_state = _SeedState(seed, name="seed_state")
        self.probe = None
        if num_classes is not None:
            self.probe = keras.layers.Dense(num_classes, dtype="float32", name="probe")
            self.probe.build((None, dim))
        self.probe_optimizer = None
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ["loss", self.base_loss_name] + names + ["z_std"]
        }
        if self.probe is not None:
            self._trackers["probe_loss"] = keras.metrics.Mean(name="probe_loss")
            self._trackers["probe_accuracy"] = keras.metrics.SparseCategoricalAccuracy(
                name="probe_accuracy"
            )

    # -- to be written by a method --------------------------------------------------------

    # Whether `compute_base` uses every crop of a tuple `"query"` (else one query view).
    multi_crop_queries = False

    def default_head(self, feature_dim):
        """The projection head used when `head=None`: `ProjectionHead()` (MLP, 128-d)."""
        return ProjectionHead()

    def compute_base(self, views, training):
        """Encodes `views` (a `Views`) and returns the method's `BaseOutputs`."""
        raise NotImplementedError

    def after_step(self, outputs):
        """Called after each optimizer step with the step's `BaseOutputs`."""

    def validate_views(self, views):
        """Static checks of a parsed batch (raises `ValueError`)."""

    # -- shared machinery ------------------------------------------------------------------

    @property
    def metrics(self):
        return list(self._trackers.values())

    def compile(self, optimizer="rmsprop", probe_optimizer=None, **kwargs):
        """`keras.Model.compile`, plus the online probe's own optimizer.

        Args:
            optimizer: the optimizer of the encoder, head (and predictor).
            probe_optimizer: optimizer of the linear probe (only with `num_classes`); a
                Keras optimizer or identifier. Defaults to `keras.optimizers.Adam(1e-3)`.
            **kwargs: passed to `keras.Model.compile` (e.g. `jit_compile`); a `loss` is
                refused: the trainer owns its losses.
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                f"{type(self).__name__} computes its own losses; pass them to the "
                f"constructor, not to compile. Received: loss={kwargs['loss']!r}"
            )
        super().compile(optimizer=optimizer, **kwargs)
        # Built here, on exactly the variables it trains, so that its state has the same
        # layout however it is restored (`load_model`, `BackupAndRestore`, a strategy).
        self.optimizer.build(self.main_variables())
        if self.probe is not None:
            if probe_optimizer is None:
                probe_optimizer = keras.optimizers.Adam(1e-3)
            self.probe_optimizer = keras.optimizers.get(probe_optimizer)
            self.probe_optimizer.build(self.probe.trainable_variables)

    def build_momentum_network(self):
        """Creates the momentum (EMA) copies of encoder and head used by momentum bases.

        Sets `momentum_encoder`, `momentum_head` (non-trainable clones with the online
        weights) and the `(online, momentum)` variable pairs that `update_momentum_network`
        moves; BatchNorm statistics are not paired (each network keeps its own).
        """
        self.momentum_encoder = clone_momentum_encoder(self.encoder)
        self.momentum_head = clone_momentum_layer(self.head, (None, self.feature_dim))
        self._momentum_pairs = momentum_pairs(
            self.encoder, self.momentum_encoder
        ) + momentum_pairs(self.head, self.momentum_head)

    def update_momentum_network(self, momentum):
        """EMA step `theta_m <- m theta_m + (1 - m) theta` of the momentum network."""
        momentum_update(self._momentum_pairs, momentum)

    def momentum_project(self, images, training):
        """L2-normalised, stop-gradient projections of the momentum network."""
        features = self.momentum_encoder(images, training=training)
        return tf.stop_gradient(l2_normalize(self.momentum_head(features, training=training)))

    def get_compile_config(self):
        config = super().get_compile_config()
        if config and self.probe_optimizer is not None:
            config = dict(config)
            config["probe_optimizer"] = keras.saving.serialize_keras_object(self.probe_optimizer)
        return config

    def compile_from_config(self, config):
        """Compiles a loaded trainer as it was saved (optimizer, probe optimizer, options)."""
        compile_as_saved(self, config)

    def next_seed(self, training):
        """A stateless seed for one random draw: fresh in training, fixed in evaluation."""
        if training:
            return self.seed_state.generator.next()
        return tf.constant(EVALUATION_SEED, "int32")

    def project(self, images, training):
        """`(features, l2-normalised projections)` of `images` through encoder and head."""
        features = self.encoder(images, training=training)
        return features, l2_normalize(self.head(features, training=training))

    def call(self, inputs, training=False):
        if isinstance(inputs, dict):
            inputs = _as_list(inputs["query"])[0]
        elif len(inputs.shape) == 5:
            inputs = inputs[:, 0]
        features, projections = self.project(inputs, training)
        outputs = {"embeddings": features, "projections": projections}
        if self.probe is not None:
            logits = self.probe(tf.cast(features, "float32"), training=training)
            outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        return outputs

    def parse_batch(self, data):
        """Turns a batch in any accepted format into `Views` (see the module docstring)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} batches have no sample weights. Received a third "
                f"element in the batch. Expected {_FORMAT}."
            )
        if isinstance(x, dict):
            unknown = sorted(set(x) - set(_BATCH_KEYS))
            if "query" not in x or "key" not in x or unknown:
                raise ValueError(
                    f"{type(self).__name__} expects batches {_FORMAT}. Received keys: "
                    f"{sorted(x)}"
                )
            labels = x.get("labels", y)
            if x.get("labels") is not None and y is not None:
                raise ValueError(
                    "Labels were given twice: under 'labels' and as the batch's second "
                    "element. Pass them once."
                )
            views = Views(
                query=_as_list(x["query"]),
                key=x["key"],
                strong=_as_list(x.get("strong")),
                extra=[],
                labels=labels,
            )
        elif hasattr(x, "shape") and x.shape.rank == 5:
            num_views = x.shape[1]
            if num_views is None or num_views < 2:
                raise ValueError(
                    "Views [B, V, H, W, C] need a static V >= 2. Received: "
                    f"views.shape={tuple(x.shape)}"
                )
            views = Views(
                query=[x[:, 0]],
                key=x[:, 1],
                strong=[],
                extra=[x[:, i] for i in range(2, num_views)],
                labels=y,
            )
        else:
            shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
            raise ValueError(
                f"{type(self).__name__} expects batches {_FORMAT}. Received: {shape}"
            )
        if views.labels is not None:
            labels = tf.convert_to_tensor(views.labels)
            if labels.dtype.is_floating and labels.shape.rank != 2:
                raise ValueError(
                    "`labels` must be int class ids [B] or one-hot [B, classes]. Received: "
                    f"labels.dtype={labels.dtype.name}, labels.shape={tuple(labels.shape)}"
                )
            views.labels = labels
        if len(views.query) > 1 and not self.multi_crop_queries:
            raise ValueError(
                f"{type(self).__name__} takes one query view; several query crops (CLSA's "
                "multi-crop) are used by MoCoModel. Received: a tuple of "
                f"{len(views.query)} query crops"
            )
        for add_on in self.add_ons:
            add_on.validate(self, views)
        self.validate_views(views)
        return views

    def main_variables(self):
        """The variables the main optimizer trains (all trainable ones but the probe's)."""
        if self.probe is None:
            return self.trainable_variables
        skip = {id(v) for v in self.probe.trainable_variables}
        return [v for v in self.trainable_variables if id(v) not in skip]

    def compute_terms(self, views, training):
        """`(terms, outputs)`: every loss term (with `"loss"`, the total) and `BaseOutputs`."""
        outputs = self.compute_base(views, training)
        terms = dict(outputs.terms)
        total = terms[self.base_loss_name]
        for add_on in self.add_ons:
            value = tf.cast(add_on.compute(self, outputs, views, training), "float32")
            terms[add_on.loss_name] = value
            total = total + add_on.weight * value
        if self.losses:  # regularisers of the encoder / head (per replica like the rest)
            total = total + tf.cast(tf.add_n(self.losses), "float32")
        terms["loss"] = total
        return terms, outputs

    def _class_ids(self, labels):
        if labels.shape.rank == 2 and labels.shape[-1] != 1:
            return tf.argmax(labels, axis=-1, output_type=tf.int32)
        return tf.reshape(tf.cast(labels, tf.int32), [-1])

    def _probe_step(self, features, labels, training):
        """Trains (in training) the probe on stop-gradient features; returns its outputs."""
        if self.probe is None or labels is None:
            return None
        class_ids = self._class_ids(labels)
        features = tf.stop_gradient(tf.cast(features, "float32"))
        with tf.GradientTape() as tape:
            logits = self.probe(features, training=training)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=class_ids, logits=logits)
            )
            scaled = scale_loss_for_distribution(loss)
        if training:
            if self.probe_optimizer is None:
                raise ValueError(
                    "The probe has no optimizer: call `compile()` on the trainer before fit."
                )
            variables = self.probe.trainable_variables
            self.probe_optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return class_ids, logits, loss

    def _update_metrics(self, terms, outputs, probe, batch):
        batch = tf.cast(batch, "float32")
        for name, value in terms.items():
            self._trackers[name].update_state(value, sample_weight=batch)
        std = tf.reduce_mean(tf.math.reduce_std(outputs.projections, axis=0))
        self._trackers["z_std"].update_state(std, sample_weight=batch)
        self._update_probe_metrics(probe, batch)
        return {m.name: m.result() for m in self.metrics}

    def _update_probe_metrics(self, probe, batch):
        if probe is None:
            return
        class_ids, logits, loss = probe
        self._trackers["probe_loss"].update_state(loss, sample_weight=batch)
        self._trackers["probe_accuracy"].update_state(class_ids, logits)

    def train_step(self, data):
        views = self.parse_batch(data)
        variables = self.main_variables()
        with tf.GradientTape() as tape:
            terms, outputs = self.compute_terms(views, training=True)
            scaled = self.optimizer.scale_loss(scale_loss_for_distribution(terms["loss"]))
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        probe = self._probe_step(outputs.features, views.labels, training=True)
        self.after_step(outputs)
        return self._update_metrics(terms, outputs, probe, views.batch_size)

    def test_step(self, data):
        x, y, _ = keras.utils.unpack_x_y_sample_weight(data)
        if hasattr(x, "shape") and not isinstance(x, dict) and x.shape.rank == 4:
            # Plain labelled images (a validation split): only the probe is evaluated.
            if self.probe is None or y is None:
                raise ValueError(
                    "evaluate() on plain images [B, H, W, C] reports the online probe's "
                    "accuracy: it needs `num_classes` and labels. Received: "
                    f"num_classes={self.num_classes}, labels={'given' if y is not None else None}"
                )
            features = self.encoder(x, training=False)
            probe = self._probe_step(features, tf.convert_to_tensor(y), training=False)
            self._update_probe_metrics(probe, tf.cast(tf.shape(x)[0], "float32"))
            return {
                name: self._trackers[name].result() for name in ("probe_loss", "probe_accuracy")
            }
        views = self.parse_batch(data)
        terms, outputs = self.compute_terms(views, training=False)
        probe = self._probe_step(outputs.features, views.labels, training=False)
        return self._update_metrics(terms, outputs, probe, views.batch_size)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "head": keras.saving.serialize_keras_object(self.head),
                "add_ons": [keras.saving.serialize_keras_object(a) for a in self.add_ons],
                "num_classes": self.num_classes,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key, value in list(config.items()):
            if key == "add_ons":
                config[key] = [keras.saving.deserialize_keras_object(a) for a in value]
            elif isinstance(value, dict) and "class_name" in value:
                config[key] = keras.saving.deserialize_keras_object(value)
        return cls(**config)
