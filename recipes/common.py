"""Flags and plumbing shared by every recipe: the only module that defines flags.

Each recipe (`supcon_cifar.py`, `imclr_cifar.py`, ...) imports this module, which defines the
shared flags; `config_from_flags()` turns the parsed flags into a typed, immutable
`RecipeConfig` that the rest of the recipe (and the library) receives as plain arguments.
"""

import dataclasses
import json
import os
import random

from absl import flags
from absl import logging

# TensorFlow's default CPU allocator gets fresh pages from the OS for every large tensor
# and faults them in; its BFC allocator reuses memory. On the CPU input pipeline this makes
# StrongAugment at 224x224 about 2x faster (BENCHMARKS.md). It must be set before TensorFlow
# starts; an explicit setting in the environment wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_contrast as kc  # noqa: E402

FLAGS = flags.FLAGS

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("sgd", "lars", "adamw", "lamb")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
CIFAR_RESNETS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}

flags.DEFINE_string(
    "dataset",
    "cifar10_sample",
    "`cifar10_sample` (shipped with the package, offline), `folder:/path` (ImageFolder "
    "layout) or a TFDS name (`cifar10`, `cifar100`, `stl10`, `imagenet2012`, ...).",
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir (prepared datasets).")
flags.DEFINE_integer(
    "validation_per_class",
    500,
    "For `folder:` datasets: images per class (the last ones) held out for validation.",
)
flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_string(
    "model",
    "resnet18",
    "resnet18|resnet34|resnet50 (CIFAR-style) or a keras.applications name (e.g. ResNet50).",
)
flags.DEFINE_integer(
    "width", 16, "CIFAR ResNet first-stage width (64 = the standard ResNet; 16 is CPU-sized)."
)
flags.DEFINE_bool(
    "sync_bn", False, "BatchNorm statistics over the global batch of all replicas (CIFAR "
    "ResNets); keeps the moving statistics identical across workers."
)
flags.DEFINE_integer("image_size", None, "Training image size; default: the dataset's.")
flags.DEFINE_integer("epochs", 1, "Training epochs.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (split across replicas).")
flags.DEFINE_float(
    "learning_rate", 0.5, "Learning rate per 256 examples: scaled by batch_size / 256."
)
flags.DEFINE_enum("optimizer", "sgd", OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("weight_decay", 1e-4, "Weight decay (sgd: L2 via the optimizer's decay).")
flags.DEFINE_float("momentum", 0.9, "Momentum for sgd and lars.")
flags.DEFINE_float("warmup_epochs", 0.0, "Linear warm-up epochs before the cosine decay.")
flags.DEFINE_float("temperature", 0.1, "Contrastive softmax temperature.")
flags.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "Keras dtype policy.")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_string(
    "model_dir", None, "Checkpoints (resume after a kill) and TensorBoard logs; default: a "
    "fresh folder under /tmp."
)
flags.DEFINE_string("export_dir", None, "SavedModel export folder; default saved_models/<recipe>.")
flags.DEFINE_integer("seed", 0, "Random seed (Python, NumPy, TF, tf.data, augmentations).")
flags.DEFINE_integer(
    "steps_per_epoch", None, "Optimizer steps per epoch (quick runs); default: one pass."
)
flags.DEFINE_integer("eval_epochs", 5, "Epochs of the linear classifier in linear evaluation.")
flags.DEFINE_bool("cache", True, "Cache the decoded dataset in memory.")


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """The shared flags, validated; recipes pass its fields to the library as arguments."""

    recipe: str
    dataset: str
    data_dir: str
    validation_per_class: int
    strategy: str
    tpu: str
    model: str
    width: int
    image_size: int
    sync_bn: bool
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: str
    weight_decay: float
    momentum: float
    warmup_epochs: float
    temperature: float
    mixed_precision: str
    jit_compile: bool
    model_dir: str
    export_dir: str
    seed: int
    steps_per_epoch: int
    eval_epochs: int
    cache: bool


def config_from_flags(recipe):
    """Validates the shared flags and returns a `RecipeConfig`; bad values raise ValueError."""
    positive = {
        "epochs": FLAGS.epochs,
        "batch_size": FLAGS.batch_size,
        "width": FLAGS.width,
        "eval_epochs": FLAGS.eval_epochs,
    }
    for name, value in positive.items():
        if value < 1:
            raise ValueError(f"--{name} must be >= 1. Received: --{name}={value}")
    for name in ("steps_per_epoch", "image_size"):
        value = getattr(FLAGS, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name} must be >= 1. Received: --{name}={value}")
    if FLAGS.learning_rate <= 0:
        raise ValueError(
            f"--learning_rate must be > 0. Received: --learning_rate={FLAGS.learning_rate}"
        )
    if FLAGS.temperature <= 0:
        raise ValueError(f"--temperature must be > 0. Received: --temperature={FLAGS.temperature}")
    if FLAGS.warmup_epochs < 0 or FLAGS.warmup_epochs > FLAGS.epochs:
        raise ValueError(
            "--warmup_epochs must be in [0, --epochs]. "
            f"Received: --warmup_epochs={FLAGS.warmup_epochs} with --epochs={FLAGS.epochs}"
        )
    if FLAGS.tpu and FLAGS.strategy != "tpu":
        raise ValueError(
            f"--tpu is only used with --strategy=tpu. Received: --strategy={FLAGS.strategy}"
        )
    if FLAGS.strategy == "multi_worker" and "TF_CONFIG" not in os.environ:
        raise ValueError(
            "--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and "
            "task of this worker)."
        )
    if FLAGS.mixed_precision == "mixed_float16" and FLAGS.strategy == "tpu":
        raise ValueError("TPUs use --mixed_precision=mixed_bfloat16, not mixed_float16.")
    model = FLAGS.model
    if model not in CIFAR_RESNETS and not hasattr(keras.applications, model):
        raise ValueError(
            f"--model must be one of {sorted(CIFAR_RESNETS)} or a keras.applications name "
            f"(e.g. ResNet50). Received: --model={model}"
        )
    model_dir = FLAGS.model_dir or os.path.join(
        "/tmp", "keras_contrast", f"{recipe}_{os.getpid()}"
    )
    export_dir = FLAGS.export_dir or os.path.join("saved_models", recipe)
    return RecipeConfig(
        recipe=recipe,
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        validation_per_class=FLAGS.validation_per_class,
        strategy=FLAGS.strategy,
        tpu=FLAGS.tpu,
        model=model,
        width=FLAGS.width,
        image_size=FLAGS.image_size,
        sync_bn=FLAGS.sync_bn,
        epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size,
        learning_rate=FLAGS.learning_rate,
        optimizer=FLAGS.optimizer,
        weight_decay=FLAGS.weight_decay,
        momentum=FLAGS.momentum,
        warmup_epochs=FLAGS.warmup_epochs,
        temperature=FLAGS.temperature,
        mixed_precision=FLAGS.mixed_precision,
        jit_compile=FLAGS.jit_compile,
        model_dir=model_dir,
        export_dir=export_dir,
        seed=FLAGS.seed,
        steps_per_epoch=FLAGS.steps_per_epoch,
        eval_epochs=FLAGS.eval_epochs,
        cache=FLAGS.cache,
    )


def set_up(config):
    """Seeds every RNG, sets the dtype policy, and returns the distribution strategy."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(config.mixed_precision)
    strategy = kc.distribute.make_strategy(config.strategy, tpu_address=config.tpu)
    logging.info("Strategy %s with %d replicas", type(strategy).__name__,
                 strategy.num_replicas_in_sync)
    return strategy


def load_splits(config):
    """`(train, validation, info)` for `--dataset`: datasets of `(uint8 image, int label)`."""
    name = config.dataset
    if name == "cifar10_sample":
        train, info = kc.data.cifar10_sample("train")
        validation, _ = kc.data.cifar10_sample("validation")
    elif name.startswith("folder:"):
        path = name[len("folder:"):]
        kwargs = dict(validation_per_class=config.validation_per_class,
                      image_size=config.image_size)
        # Folders list files class by class: shuffle the file list itself, or a bounded
        # shuffle buffer would see only a few classes at a time.
        train, info = kc.data.folder_source(
            path, "train", shuffle_files=True, seed=config.seed, **kwargs
        )
        validation, _ = kc.data.folder_source(path, "validation", **kwargs)
    else:
        train, info = kc.data.load(name, "train", data_dir=config.data_dir)
        validation_split = "test" if "test" in info.splits else "validation"
        validation, _ = kc.data.load(name, validation_split, data_dir=config.data_dir)
    return train, validation, info


def image_size(config, info):
    size = config.image_size or info.image_shape[0]
    if size is None:
        raise ValueError(
            f"The images of --dataset={config.dataset} vary in size: pass --image_size."
        )
    return size


def steps_per_epoch(config, info):
    if config.steps_per_epoch:
        return config.steps_per_epoch
    if info.num_examples is None:
        raise ValueError(
            f"The size of --dataset={config.dataset} is unknown: pass --steps_per_epoch."
        )
    return max(1, info.num_examples // config.batch_size)


def build_encoder(config, size, image_shape=None):
    """The backbone named by `--model`, returning pooled features of 0-255 images."""
    image_shape = image_shape or (size, size, 3)
    if config.model in CIFAR_RESNETS:
        return kc.models.ResNet(
            depth=CIFAR_RESNETS[config.model],
            width=config.width,
            image_shape=image_shape,
            synchronized_batch_norm=config.sync_bn,
        )
    return kc.models.ApplicationBackbone(config.model, image_shape=image_shape)


def build_optimizer(config, steps):
    """Optimizer with warm-up + cosine decay; the learning rate is scaled by batch / 256."""
    peak = config.learning_rate * config.batch_size / 256.0
    total = steps * config.epochs
    warmup = int(round(config.warmup_epochs * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=max(1, total - warmup),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
    )
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(
            schedule, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
        )
    if config.optimizer == "lars":
        return kc.optimizers.LARS(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    return keras.optimizers.Lamb(schedule, weight_decay=config.weight_decay)


class ImageSummary(keras.callbacks.Callback):
    """Writes a few augmented training views to TensorBoard once, at the start of training."""

    def __init__(self, log_dir, views, max_images=8):
        super().__init__()
        self.log_dir = log_dir
        self.views = views
        self.max_images = max_images

    def on_train_begin(self, logs=None):
        writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "images"))
        with writer.as_default():
            for name, images in self.views.items():
                images = tf.convert_to_tensor(images)[: self.max_images]
                if images.dtype != tf.uint8:
                    images = tf.cast(tf.clip_by_value(images, 0, 255), tf.uint8)
                tf.summary.image(name, images, step=0, max_outputs=self.max_images)
        writer.flush()


def callbacks(config, example_views):
    """Progress, TensorBoard (with augmented views), and per-epoch resumable checkpoints.

    `BackupAndRestore` saves model, optimizer and epoch at the end of every epoch and, when
    the recipe is started again with the same `--model_dir` after a kill, resumes from the
    last finished epoch.
    """
    log_dir = os.path.join(config.model_dir, "tensorboard")
    return [
        # double_checkpoint: a kill while a backup is being written leaves the previous
        # one to resume from.
        keras.callbacks.BackupAndRestore(
            os.path.join(config.model_dir, "backup"), double_checkpoint=True
        ),
        keras.callbacks.TensorBoard(log_dir=log_dir),
        ImageSummary(log_dir, example_views),
    ]


def first_views(dataset, key=None):
    """Pulls one batch of views from a (non-distributed) dataset for `ImageSummary`."""
    batch = next(iter(dataset.take(1)))
    return batch if key is None else batch[key]


def report(result):
    """Prints the final one-line JSON summary that every recipe ends with."""
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    return line


def view_maker(kinds, size, seed):
    """A batched view function: `[B, H, W, 3]` images -> `[B, V, size, size, 3]` float views.

    `kinds` lists one entry per view: `"weak"` (SimCLR/MoCo-v2 augmentation), `"strong"`
    (CLSA: weak + StrongAugment), or `"none"` (resize only, for evaluation).
    """
    pipelines = []
    for i, kind in enumerate(kinds):
        view_seed = None if seed is None else seed + 1000 * i
        if kind == "weak":
            pipelines.append(kc.layers.weak_pipeline(size, seed=view_seed))
        elif kind == "strong":
            pipelines.append(kc.layers.clsa_strong_pipeline(size, seed=view_seed))
        else:
            raise ValueError(f"Unknown view kind {kind!r}; expected 'weak' or 'strong'.")
    return kc.layers.MultiView(pipelines)


def eval_pipelines(config, strategy, train, validation):
    """Un-augmented, batched `(float32 image, label)` datasets for linear evaluation."""

    def to_float(images, labels):
        return tf.cast(images, tf.float32), labels

    common_args = dict(batch_size=config.batch_size, cache=config.cache, seed=config.seed)
    train_batches = kc.data.build_pipeline(train, **common_args).map(to_float)
    validation_batches = kc.data.build_pipeline(
        validation, shuffle_buffer=0, drop_remainder=False, **common_args
    ).map(to_float)
    return train_batches, validation_batches


def linear_eval(config, strategy, encoder, train, validation, info):
    """Linear evaluation of a frozen `encoder`; returns `(accuracy, LinearClassifier)`."""
    train_batches, validation_batches = eval_pipelines(config, strategy, train, validation)
    with strategy.scope():
        accuracy, classifier = kc.models.linear_evaluation(
            encoder,
            train_batches,
            validation_batches,
            num_classes=info.num_classes,
            epochs=config.eval_epochs,
            verbose=2,
        )
    logging.info("Linear evaluation accuracy: %.4f", accuracy)
    return accuracy, classifier


# CLSA multi-crop at CIFAR scale: the paper's ImageNet sizes 224/192/160/128/96 scaled to the
# image size, with the paper's crop scales.
MULTI_CROP_SIZES = (224, 192, 160, 128, 96)
MULTI_CROP_SCALES = ((0.2, 1.0), (0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429))


def moco_view_fn(size, seed, clsa=False, crops="single"):
    """Batched view function for `MoCoModel`: images -> {"query", "key"[, "strong"]}."""
    query = kc.layers.weak_pipeline(size, seed=seed)
    key = kc.layers.weak_pipeline(size, seed=None if seed is None else seed + 1)
    strong = []
    if clsa:
        if crops == "single":
            strong = [kc.layers.clsa_strong_pipeline(size, seed=None if seed is None else seed + 2)]
        else:
            for i, (crop, scale) in enumerate(zip(MULTI_CROP_SIZES, MULTI_CROP_SCALES)):
                crop_size = max(8, int(round(size * crop / 224)))
                strong.append(
                    kc.layers.clsa_strong_pipeline(
                        crop_size, scale=scale, seed=None if seed is None else seed + 2 + i
                    )
                )

    def views(images):
        out = {"query": query(images, training=True), "key": key(images, training=True)}
        if strong:
            crops_out = [pipeline(images, training=True) for pipeline in strong]
            out["strong"] = crops_out[0] if len(crops_out) == 1 else tuple(crops_out)
        return out

    return views


def run_moco_recipe(config, *, clsa=False, mixco=False, base="moco", crops="single",
                    queue_size=4096, momentum=0.99, extra=None):
    """MoCo-v2 (or SimCLR) pretraining with CLSA/MixCo, linear evaluation, export, report."""
    if queue_size % config.batch_size:
        raise ValueError(
            "--queue_size must be a multiple of the global --batch_size. "
            f"Received: --queue_size={queue_size} with --batch_size={config.batch_size}"
        )
    strategy = set_up(config)
    train, validation, info = load_splits(config)
    size = image_size(config, info)
    steps = steps_per_epoch(config, info)
    multi_size = clsa and crops == "multi"

    def make_train(input_context):
        return kc.data.build_pipeline(
            train,
            batch_size=config.batch_size,
            view_fn=moco_view_fn(size, config.seed, clsa=clsa, crops=crops),
            view_fn_batched=True,
            repeat=True,
            cache=config.cache,
            seed=config.seed,
            input_context=input_context,
        ).map(lambda views, labels: views)

    train_views = kc.data.distribute(strategy, make_train)
    with strategy.scope():
        backbone = build_encoder(config, size, (None, None, 3) if multi_size else None)
        encoder = keras.Sequential(
            [backbone, kc.models.ProjectionHead(output_dim=128, normalize=False)]
        )
        encoder.build((None, None, None, 3) if multi_size else (None, size, size, 3))
        if base == "simclr":
            model = kc.models.SimCLRMixCoModel(
                encoder, temperature=config.temperature, mixco=mixco, seed=config.seed
            )
        else:
            model = kc.models.MoCoModel(
                encoder,
                queue_size=queue_size,
                momentum=momentum,
                temperature=config.temperature,
                clsa=clsa,
                mixco=mixco,
                seed=config.seed,
            )
        model.compile(optimizer=build_optimizer(config, steps), jit_compile=config.jit_compile)

    example = first_views(make_train(None))
    summary = {"query": example["query"], "key": example["key"]}
    if clsa:
        strong = example["strong"]
        summary["strong"] = strong if not isinstance(strong, (list, tuple)) else strong[0]
    model.fit(train_views, epochs=config.epochs, steps_per_epoch=steps,
              callbacks=callbacks(config, summary))

    encoder_path = save_encoder(config, backbone)
    accuracy, classifier = linear_eval(config, strategy, backbone, train, validation, info)
    export_dir = kc.export.export_saved_model(classifier, config.export_dir, (size, size))
    result = {
        "encoder_path": encoder_path,
        "recipe": config.recipe,
        "base": base,
        "clsa": clsa,
        "mixco": mixco,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "steps_per_epoch": steps,
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "linear_eval_accuracy": accuracy,
        "export_dir": export_dir,
    }
    result.update(extra or {})
    return report(result)


def save_encoder(config, encoder):
    """Saves the pretrained encoder as `<model_dir>/encoder.keras` for `linear_eval.py`."""
    path = os.path.join(config.model_dir, "encoder.keras")
    os.makedirs(config.model_dir, exist_ok=True)
    encoder.save(path)
    return path
