"""The parsed flags as frozen, typed, validated configs.

`config_from_flags(recipe)` returns the shared `RecipeConfig`; `pretrain_config_from_flags`
the `PretrainConfig` of `pretrain.py` and its presets. Bad values and combinations raise a
`ValueError` that names the flag and the received value. Nothing here builds models or data:
`builders.py` receives these configs.
"""

import dataclasses
import inspect
import os

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import keras
from absl import flags

import keras_contrast as kc

FLAGS = flags.FLAGS

# The bases that can keep a key queue, and the flags of MoCoModel alone.
QUEUE_BASES = ("moco", "supcon")
MOCO_ONLY_FLAGS = ("shuffle_bn", "bn_splits", "batch_negatives", "symmetric")


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """The shared flags, validated; recipes pass its fields to the library as arguments."""

    recipe: str
    dataset: str
    data_dir: str | None
    validation_per_class: int
    strategy: str
    tpu: str | None
    model: str
    width: int
    image_size: int | None
    sync_bn: bool
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    weight_decay: float
    momentum: float
    nesterov: bool
    train_fraction: float
    eval_protocol: str
    eval_learning_rate: float
    validation_curve: bool
    warmup_epochs: float
    cosine_floor: float
    mixed_precision: str
    jit_compile: bool
    model_dir: str
    export_dir: str
    seed: int
    steps_per_epoch: int | None
    eval_epochs: int
    cache: bool
    on_bad_image: str = "error"

    @property
    def has_validation(self):
        """False for a `folder:` dataset with `--validation_per_class=0` (every image trains).

        Without a validation split the recipes train and export as usual, measure no
        validation curve and report `null` accuracies.
        """
        return not (self.dataset.startswith("folder:") and self.validation_per_class == 0)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """The pretraining flags, validated against the base and the add-ons.

    A trainer argument that is `None` was not given: the trainer's default applies
    (`builders.build_trainer` passes only the given ones). `crops` is `"single"` or `"multi"`
    with `clsa`, else `None`.
    """

    base: str
    clsa: bool
    mixco: bool
    crops: str | None
    blur: bool
    projection_dim: int | None
    probe: bool
    temperature: float | None
    queue_size: int | None
    moco_momentum: float | None
    shuffle_bn: bool | None
    bn_splits: int | None
    batch_negatives: bool | None
    symmetric: bool | None
    clsa_weight: float | None
    clsa_temperature: float | None
    mixco_weight: float | None
    mixco_temperature: float | None
    knn_monitor: bool = False


def _check_positive(flag_values, names, allow_none=False):
    for name in names:
        value = getattr(flag_values, name)
        if value is None and allow_none:
            continue
        if value < 1:
            raise ValueError(f"--{name} must be >= 1. Received: --{name}={value}")


def config_from_flags(recipe, flag_values=FLAGS):
    """Validates the shared flags and returns a `RecipeConfig`; bad values raise ValueError.

    Args:
        recipe: the recipe's name: the default export folder is `saved_models/<recipe>`.
        flag_values: the parsed flags. Defaults to `absl.flags.FLAGS`.
    """
    f = flag_values
    _check_positive(f, ("epochs", "batch_size", "width", "eval_epochs"))
    _check_positive(f, ("steps_per_epoch", "image_size"), allow_none=True)
    if f.learning_rate <= 0:
        raise ValueError(
            f"--learning_rate must be > 0. Received: --learning_rate={f.learning_rate}"
        )
    if not f.eval_learning_rate > 0:
        raise ValueError(
            "--eval_learning_rate must be > 0. "
            f"Received: --eval_learning_rate={f.eval_learning_rate}"
        )
    if not 0 < f.train_fraction <= 1:
        raise ValueError(
            f"--train_fraction must be in (0, 1]. Received: --train_fraction={f.train_fraction}"
        )
    if f.warmup_epochs < 0 or f.warmup_epochs > f.epochs:
        raise ValueError(
            "--warmup_epochs must be in [0, --epochs]. "
            f"Received: --warmup_epochs={f.warmup_epochs} with --epochs={f.epochs}"
        )
    if not 0.0 <= f.cosine_floor < 1.0:
        raise ValueError(
            f"--cosine_floor must be in [0, 1). Received: --cosine_floor={f.cosine_floor}"
        )
    if f.validation_per_class < 0:
        raise ValueError(
            "--validation_per_class must be >= 0 (0: no validation split). "
            f"Received: --validation_per_class={f.validation_per_class}"
        )
    no_validation = f.dataset.startswith("folder:") and f.validation_per_class == 0
    if no_validation and f.validation_curve and f["validation_curve"].present:
        raise ValueError(
            "--validation_curve needs a validation split. Received: --validation_curve with "
            f"--validation_per_class=0 and --dataset={f.dataset}"
        )
    if f["on_bad_image"].present and not f.dataset.startswith("folder:"):
        raise ValueError(
            "--on_bad_image is only used with --dataset=folder:... Received: "
            f"--on_bad_image={f.on_bad_image} with --dataset={f.dataset}"
        )
    if f.tpu and f.strategy != "tpu":
        raise ValueError(
            f"--tpu is only used with --strategy=tpu. Received: --strategy={f.strategy}"
        )
    if f.strategy == "multi_worker" and "TF_CONFIG" not in os.environ:
        raise ValueError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and "
            "task of this worker)."
        )
    if f.mixed_precision == "mixed_float16" and f.strategy == "tpu":
        raise ValueError("TPUs use --mixed_precision=mixed_bfloat16, not mixed_float16.")
    if f.model not in recipe_flags.CIFAR_RESNETS and not hasattr(keras.applications, f.model):
        raise ValueError(
            f"--model must be one of {sorted(recipe_flags.CIFAR_RESNETS)} or a "
            f"keras.applications name (e.g. ResNet50). Received: --model={f.model}"
        )
    model_dir = f.model_dir or os.path.join("/tmp", "keras_contrast", f"{recipe}_{os.getpid()}")
    export_dir = f.export_dir or os.path.join("saved_models", recipe)
    return RecipeConfig(
        recipe=recipe,
        dataset=f.dataset,
        data_dir=f.data_dir,
        validation_per_class=f.validation_per_class,
        strategy=f.strategy,
        tpu=f.tpu,
        model=f.model,
        width=f.width,
        image_size=f.image_size,
        sync_bn=f.sync_bn,
        epochs=f.epochs,
        batch_size=f.batch_size,
        learning_rate=f.learning_rate,
        optimizer=f.optimizer,
        weight_decay=f.weight_decay,
        momentum=f.momentum,
        nesterov=f.nesterov,
        train_fraction=f.train_fraction,
        eval_protocol=f.eval_protocol,
        eval_learning_rate=f.eval_learning_rate,
        validation_curve=f.validation_curve and not no_validation,
        warmup_epochs=f.warmup_epochs,
        cosine_floor=f.cosine_floor,
        mixed_precision=f.mixed_precision,
        jit_compile=f.jit_compile,
        model_dir=model_dir,
        export_dir=export_dir,
        seed=f.seed,
        steps_per_epoch=f.steps_per_epoch,
        eval_epochs=f.eval_epochs,
        cache=f.cache,
        on_bad_image=f.on_bad_image,
    )


def _trainer_default(trainer, argument):
    """The default of `argument` in the trainer's `__init__` (one source of truth)."""
    return inspect.signature(trainer.__init__).parameters[argument].default


def _only_with(flag_values, names, condition, requirement, received):
    """Raises if a flag of `names` is given (not None) although `condition` is false."""
    if condition:
        return
    for name in names:
        value = getattr(flag_values, name)
        if value is not None:
            raise ValueError(
                f"--{name} is only used {requirement}. Received: --{name}={value} with "
                f"{received}"
            )


def pretrain_config_from_flags(config, flag_values=FLAGS):
    """Validates the pretraining flags against `--base` and returns a `PretrainConfig`.

    Args:
        config: the `RecipeConfig` of the same flags (its `batch_size` bounds the queue and
            the BatchNorm splits).
        flag_values: the parsed flags. Defaults to `absl.flags.FLAGS`.
    """
    f = flag_values
    base = f.base
    _check_positive(f, ("projection_dim", "queue_size", "bn_splits"), allow_none=True)
    for name in ("temperature", "clsa_temperature", "mixco_temperature"):
        value = getattr(f, name)
        if value is not None and value <= 0:
            raise ValueError(f"--{name} must be > 0. Received: --{name}={value}")
    for name in ("clsa_weight", "mixco_weight"):
        value = getattr(f, name)
        if value is not None and value < 0:
            raise ValueError(f"--{name} must be >= 0. Received: --{name}={value}")
    if f.moco_momentum is not None and not 0 <= f.moco_momentum <= 1:
        raise ValueError(
            f"--moco_momentum must be in [0, 1]. Received: --moco_momentum={f.moco_momentum}"
        )

    received = f"--base={base}"
    _only_with(
        f, ("temperature", "projection_dim"), base != "byol", "by the contrastive bases",
        received,
    )
    _only_with(
        f, ("queue_size",), base in QUEUE_BASES, "with --base=moco or --base=supcon", received
    )
    _only_with(
        f, ("moco_momentum",), base in ("moco", "byol") or f.queue_size is not None,
        "with --base=moco, --base=byol, or --base=supcon with --queue_size",
        received + ("" if f.queue_size is None else f" --queue_size={f.queue_size}"),
    )
    _only_with(f, MOCO_ONLY_FLAGS, base == "moco", "with --base=moco", received)
    _only_with(f, ("crops", "clsa_weight", "clsa_temperature"), f.clsa, "with --clsa", "--noclsa")
    _only_with(f, ("mixco_weight", "mixco_temperature"), f.mixco, "with --mixco", "--nomixco")

    if f.knn_monitor and f.dataset.startswith("folder:") and f.validation_per_class == 0:
        raise ValueError(
            "--knn_monitor needs a validation split. Received: --knn_monitor with "
            f"--validation_per_class=0 and --dataset={f.dataset}"
        )
    queue_size = f.queue_size
    if base == "moco" and queue_size is None:
        queue_size = _trainer_default(kc.models.MoCoModel, "queue_size")
    if queue_size is not None and queue_size % config.batch_size:
        raise ValueError(
            "--queue_size must be a multiple of the global --batch_size. "
            f"Received: --queue_size={queue_size} with --batch_size={config.batch_size}"
        )
    if f.bn_splits is not None and config.batch_size % f.bn_splits:
        raise ValueError(
            "--batch_size must be divisible by --bn_splits. "
            f"Received: --batch_size={config.batch_size} with --bn_splits={f.bn_splits}"
        )
    return PretrainConfig(
        base=base,
        clsa=f.clsa,
        mixco=f.mixco,
        crops=(f.crops or "single") if f.clsa else None,
        blur=f.blur,
        projection_dim=f.projection_dim,
        probe=f.probe,
        temperature=f.temperature,
        queue_size=f.queue_size,
        moco_momentum=f.moco_momentum,
        shuffle_bn=f.shuffle_bn,
        bn_splits=f.bn_splits,
        batch_negatives=f.batch_negatives,
        symmetric=f.symmetric,
        clsa_weight=f.clsa_weight,
        clsa_temperature=f.clsa_temperature,
        mixco_weight=f.mixco_weight,
        mixco_temperature=f.mixco_temperature,
        knn_monitor=f.knn_monitor,
    )
