"""Builders shared by the recipes: data, encoders, trainers, optimisers, callbacks, reports.

Every function receives a `RecipeConfig` / `PretrainConfig` (see `recipe_config.py`) or plain
arguments; none reads flags.
"""

import dataclasses
import glob
import json
import os
import random
import shutil
import sys

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import keras
import numpy as np
import tensorflow as tf
from absl import logging

import keras_contrast as kc


def check_writable_directory(path, flag):
    """Creates `path` if needed and checks that files can be written there, at start-up.

    Raises a `ValueError` naming the flag and the path when it is a file, read-only, or full,
    so that a run cannot fail only after training.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} must be a directory. Received: {flag}={path} (a file)")
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_check_{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        os.remove(probe)
    except OSError as error:
        raise ValueError(
            f"{flag} must be a writable directory. Received: {flag}={path} ({error.strerror})"
        ) from error


def set_up(config):
    """Checks the output folders, seeds every RNG, sets the dtype policy, returns the strategy."""
    check_writable_directory(config.model_dir, "--model_dir")
    check_writable_directory(config.export_dir, "--export_dir")
    if recipe_flags.QUIET:
        logging.set_verbosity(logging.WARNING)  # absl INFO lines (TensorFlow's exports, ...)
        tf.get_logger().setLevel("ERROR")  # TensorFlow's Python-side INFO lines
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
    """`(train, validation, info)` for `--dataset`: datasets of `(uint8 image, int label)`.

    `validation` is `None` when there is no validation split (`folder:` datasets with
    `--validation_per_class=0`: every image trains).

    With `--train_fraction < 1` the training split is every k-th example of the split in its
    stored order (sorted files for folders): the same subset for every seed and recipe, so
    paired comparisons see the same data; `info.num_examples` is the subset's size.
    """
    name = config.dataset
    subset = config.train_fraction < 1
    validation = None
    if name == "cifar10_sample":
        train, info = kc.data.cifar10_sample("train")
        validation, _ = kc.data.cifar10_sample("validation")
    elif name.startswith("folder:"):
        path = name[len("folder:"):]
        kwargs = dict(validation_per_class=config.validation_per_class,
                      image_size=config.image_size, on_bad_image=config.on_bad_image)
        # Folders list files class by class: shuffle the file list itself, or a bounded
        # shuffle buffer would see only a few classes at a time (a subset is taken from the
        # sorted list first and shuffled below).
        train, info = kc.data.folder_source(
            path, "train", shuffle_files=not subset, seed=config.seed, **kwargs
        )
        if config.has_validation:
            validation, _ = kc.data.folder_source(path, "validation", **kwargs)
    else:
        train, info = kc.data.load(name, "train", data_dir=config.data_dir)
        validation_split = "test" if "test" in info.splits else "validation"
        validation, _ = kc.data.load(name, validation_split, data_dir=config.data_dir)
    if subset:
        every = int(round(1 / config.train_fraction))
        train = train.enumerate().filter(lambda i, example: i % every == 0).map(
            lambda i, example: example
        )
        if info.num_examples is not None:
            info = dataclasses.replace(
                info, num_examples=(info.num_examples + every - 1) // every
            )
            if name.startswith("folder:"):
                train = train.shuffle(info.num_examples, seed=config.seed)
    print(f"Dataset {info.summary()}", flush=True)
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
    if info.num_examples < config.batch_size:
        raise ValueError(
            f"--batch_size={config.batch_size} is larger than the training split "
            f"({info.num_examples} examples of --dataset={config.dataset} with "
            f"--train_fraction={config.train_fraction}): not one full batch per epoch."
        )
    return info.num_examples // config.batch_size


def paired_shape(size, axis):
    """The input shape of a classifier trained on ImCLR pairs of `size` x `size` images."""
    return {
        "width": (size, 2 * size, 3),
        "height": (2 * size, size, 3),
        "channels": (size, size, 6),
    }[axis]


def build_encoder(config, size, image_shape=None):
    """The backbone named by `--model`, returning pooled features of 0-255 images."""
    image_shape = image_shape or (size, size, 3)
    if config.model in recipe_flags.CIFAR_RESNETS:
        return kc.models.ResNet(
            depth=recipe_flags.CIFAR_RESNETS[config.model],
            width=config.width,
            image_shape=image_shape,
            synchronized_batch_norm=config.sync_bn,
        )
    return kc.models.ApplicationBackbone(config.model, image_shape=image_shape)


def build_optimizer(config, steps):
    """Optimizer with warm-up + cosine decay; the learning rate is scaled by batch / 256.

    The cosine decay goes from the peak to `--cosine_floor` x the peak over the steps after
    the warm-up.
    """
    peak = config.learning_rate * config.batch_size / 256.0
    total = steps * config.epochs
    warmup = int(round(config.warmup_epochs * steps))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else peak,
        decay_steps=max(1, total - warmup),
        warmup_target=peak if warmup else None,
        warmup_steps=warmup,
        alpha=config.cosine_floor,
    )
    if config.optimizer == "sgd":
        # torch.optim.SGD's semantics (coupled L2 in the momentum buffer), as the papers'
        # reference code trains; Keras' SGD decays about 10x less at momentum 0.9.
        return kc.optimizers.TorchSGD(
            schedule,
            momentum=config.momentum,
            nesterov=config.nesterov,
            weight_decay=config.weight_decay,
        )
    if config.optimizer == "lars":
        return kc.optimizers.LARS(
            schedule, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay)
    return keras.optimizers.Lamb(schedule, weight_decay=config.weight_decay)


def build_views(pretrain_config, size, seed):
    """The batched view maker: images -> `{"query", "key"[, "strong"]}` float views.

    `"strong"` (CLSA's strong crops, one or five) only with `pretrain_config.clsa`. CLSA's
    multi-crop on MoCo also makes the query five weak crops of the same sides and scales
    (5 InfoNCE and 25 DDM terms, as its reference); the other bases take one query view.
    """
    p = pretrain_config
    strong_crops = kc.data.ViewMaker.clsa_crops(size, p.crops) if p.clsa else ()
    weak_crops = strong_crops[1:] if p.crops == "multi" and p.base == "moco" else ()
    return kc.data.ViewMaker(
        size, strong_crops=strong_crops, weak_crops=weak_crops, blur=p.blur, seed=seed
    )


def _given(**arguments):
    """The arguments that are not None: the others keep the library's defaults."""
    return {name: value for name, value in arguments.items() if value is not None}


def build_trainer(config, pretrain_config, *, size, steps, num_classes, seed):
    """The pretraining model of `--base` with its add-ons (call inside `strategy.scope()`).

    Args:
        config: the `RecipeConfig` (backbone and epochs).
        pretrain_config: the `PretrainConfig` (base, add-ons, their arguments).
        size: the training image size.
        steps: optimizer steps per epoch (BYOL's momentum schedule spans all of them).
        num_classes: classes of the online linear probe (used with `pretrain_config.probe`).
        seed: the trainer's seed (mixing, shuffling BN).

    Returns:
        An uncompiled `SimCLRModel`, `SupConModel`, `MoCoModel` or `BYOLModel`.
    """
    p = pretrain_config
    # CLSA's strong crops are smaller than the weak views: one backbone for every size.
    image_shape = (None, None, 3) if p.clsa else None
    add_ons = []
    if p.clsa:
        add_ons.append(
            kc.objectives.CLSA(**_given(weight=p.clsa_weight, temperature=p.clsa_temperature))
        )
    if p.mixco:
        add_ons.append(
            kc.objectives.MixCo(**_given(weight=p.mixco_weight, temperature=p.mixco_temperature))
        )
    common = dict(
        encoder=build_encoder(config, size, image_shape),
        # None: the trainer's default head.
        head=None if p.projection_dim is None else kc.models.ProjectionHead(p.projection_dim),
        add_ons=tuple(add_ons),
        num_classes=num_classes if p.probe else None,
        seed=seed,
    )
    if p.base == "simclr":
        return kc.models.SimCLRModel(**_given(temperature=p.temperature), **common)
    if p.base == "supcon":
        return kc.models.SupConModel(
            loss=kc.losses.SupConLoss(**_given(temperature=p.temperature)),
            **_given(queue_size=p.queue_size, momentum=p.moco_momentum),
            **common,
        )
    if p.base == "moco":
        return kc.models.MoCoModel(
            **_given(
                queue_size=p.queue_size,
                momentum=p.moco_momentum,
                temperature=p.temperature,
                shuffle_bn=p.shuffle_bn,
                bn_splits=p.bn_splits,
                batch_negatives=p.batch_negatives,
                symmetric=p.symmetric,
            ),
            **common,
        )
    return kc.models.BYOLModel(
        **_given(momentum=p.moco_momentum),
        total_steps=config.epochs * steps,
        **common,
    )


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
                if images.shape[-1] in (1, 3, 4):
                    tf.summary.image(name, images, step=0, max_outputs=self.max_images)
                    continue
                # E.g. ImCLR's channel pairing (6 channels): one RGB image per 3 channels.
                for start in range(0, images.shape[-1] - 2, 3):
                    tf.summary.image(f"{name}_channels_{start}-{start + 2}",
                                     images[..., start:start + 3], step=0,
                                     max_outputs=self.max_images)
        writer.flush()


def backup_dir(config):
    """The folder of the per-epoch training backups: `<model_dir>/backup`."""
    return os.path.join(config.model_dir, "backup")


def callbacks(config, example_views):
    """Resumable per-epoch backups, TensorBoard (with augmented views); the backup first.

    `keras_contrast.models.AtomicBackupAndRestore` saves model, optimizer and epoch at the
    end of every epoch, atomically, and when the recipe is started again with the same
    `--model_dir` after a kill, resumes from the last finished epoch (a damaged backup falls
    back to the previous one, or to a fresh start, with a warning naming the file). The
    backup is kept when `fit` ends: a recipe calls `remove_backup` once it has saved what it
    trained and written its phase marker, so that a kill in between loses nothing.
    """
    log_dir = os.path.join(config.model_dir, "tensorboard")
    return [
        kc.models.AtomicBackupAndRestore(backup_dir(config), delete_checkpoint=False),
        keras.callbacks.TensorBoard(log_dir=log_dir),
        ImageSummary(log_dir, example_views),
    ]


def remove_backup(config):
    """Deletes the training backups (call after the trained model and its marker are saved)."""
    shutil.rmtree(backup_dir(config), ignore_errors=True)


def last_epoch_metrics(history, backup, names):
    """The last epoch's values of the metrics `names` that were logged.

    From this `fit`'s `history` (a `keras.callbacks.History`'s dict), or, when a resumed run
    had no epoch left to train, from the logs saved with the backup it restored.
    """
    if history.get("loss"):
        logs = {name: values[-1] for name, values in history.items() if values}
    else:
        logs = backup.restored_logs or {}
    return {name: float(logs[name]) for name in names if name in logs}


def first_views(dataset):
    """Pulls one batch from a (non-distributed) dataset, e.g. views for `ImageSummary`."""
    return next(iter(dataset.take(1)))


def write_json(path, value):
    """Writes JSON atomically (a temporary file, then a rename): a kill never leaves half a file."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def read_json(path):
    """The JSON value at `path`; `None` if it is missing or damaged (with a warning)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        logging.warning("Ignoring the damaged file %s (%s); the phase runs again.", path, error)
        return None


def save_keras(model, path):
    """`model.save(path)` through a temporary file and a rename (atomic)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    stem = path[: -len(".keras")]
    for stale in glob.glob(glob.escape(stem) + ".tmp*.keras"):  # left by a killed run
        os.remove(stale)
    temporary = f"{stem}.tmp{os.getpid()}.keras"
    model.save(temporary)
    os.replace(temporary, path)
    return path


def load_keras(path, strategy, what):
    """The model saved at `path` (under `strategy`), or `None` if it is missing or damaged.

    A damaged file (a truncated copy, a failing disk) is reported with a warning naming it,
    and the phase that writes it runs again instead of failing every later start.
    """
    if not os.path.exists(path):
        return None
    try:
        with strategy.scope():
            return keras.saving.load_model(path)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [""])[0][:300]
        logging.warning("Ignoring the damaged %s %s (%s: %s); it is made again.", what, path,
                        type(error).__name__, reason)
        return None


def accuracy_of(predict, batches):
    """Top-1 accuracy of `predict(images) -> scores [B, classes]` on `(images, labels)` batches.

    `None` without validation batches (`batches=None`: no validation split).
    """
    if batches is None:
        return None
    correct = total = 0
    for images, labels in batches:
        predictions = np.argmax(np.asarray(predict(images)), axis=-1)
        correct += int(np.sum(predictions == np.asarray(labels).reshape(-1)))
        total += int(np.asarray(labels).size)
    if total == 0:
        raise ValueError("The validation split is empty: no accuracy can be measured.")
    return correct / total


class ValidationCurve(keras.callbacks.Callback):
    """Validation accuracy after every epoch, kept in `<model_dir>/curve.json`.

    `predict` maps images to class scores (a classifier, or a trainer's online probe). The
    file maps the epoch number (from 1) to the accuracy; a resumed run rewrites the epochs it
    repeats, so the file always holds one curve. The accuracy is also logged as
    `val_accuracy` (TensorBoard, History).
    """

    def __init__(self, predict, batches, path):
        super().__init__()
        self.predict = predict
        self.batches = batches
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        record_epoch(self.path, epoch, accuracy_of(self.predict, self.batches), logs,
                     "val_accuracy")


def record_epoch(path, epoch, accuracy, logs, name):
    """Sets epoch `epoch + 1`'s accuracy in the curve file `path` and in the epoch's logs."""
    curve = read_json(path) or {}
    curve[str(epoch + 1)] = accuracy
    write_json(path, curve)
    if logs is not None:
        logs[name] = accuracy


class KNNCurve(kc.models.KNNAccuracy):
    """kNN accuracy of the encoder after every epoch, kept in `path` (`knn_curve.json`).

    MoCo's CIFAR monitor (`k=200`, `T=0.1`, the un-augmented training split as memory
    bank). The file maps the epoch number (from 1) to the accuracy, as `ValidationCurve`'s;
    the accuracy is also logged as `knn_accuracy`.
    """

    def __init__(self, train_batches, validation_batches, num_classes, path):
        super().__init__(train_batches, validation_batches, num_classes)
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        record_epoch(self.path, epoch, self.evaluate(), logs, self.log_name)


def progress_verbosity():
    """`fit` verbosity: a live progress bar in a terminal, one line per epoch otherwise."""
    return 1 if sys.stdout.isatty() else 2


def report(result):
    """Prints the final one-line JSON summary that every recipe ends with."""
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    return line


def eval_pipelines(config, train, validation, augment=False, size=None):
    """Batched `(float32 image, label)` datasets for evaluation.

    The training split is un-augmented, or with `augment` the references' linear-evaluation
    views (random resized crop to `size`, scale (0.2, 1), and a horizontal flip). Without
    augmentation, images of another size than `size` (e.g. `--image_size=16` on 32-px data)
    are resized to it (bilinear), as the training views are. The validation batches are
    `None` when `validation` is (no validation split).

    Both are deterministic (`tf.data` keeps element order, the crop and flip draw their
    random numbers one batch at a time): the same encoder and `--seed` give the same
    linear classifier however loaded the machine is, as `linear_eval` promises.
    """

    def to_float(images, labels):
        images = tf.cast(images, tf.float32)
        if size is not None and not augment and tuple(images.shape[1:3]) != (size, size):
            images = tf.image.resize(images, [size, size], method="bilinear")
        return images, labels

    common_args = dict(
        batch_size=config.batch_size, cache=config.cache, seed=config.seed, deterministic=True
    )
    train_batches = kc.data.build_pipeline(train, **common_args).map(to_float)
    if augment:
        crop_seed, flip_seed = kc.seeds.derive_seeds(config.seed, 2)
        views = keras.Sequential(
            [
                kc.layers.RandomResizedCrop(size, size, scale=(0.2, 1.0), seed=crop_seed),
                keras.layers.RandomFlip("horizontal", seed=flip_seed),
            ]
        )
        # Sequential: parallel calls would hand the seeded draws to batches in any order.
        train_batches = train_batches.map(
            lambda images, labels: (views(images, training=True), labels)
        )
    validation_batches = None
    if validation is not None:
        validation_batches = kc.data.build_pipeline(
            validation, shuffle_buffer=0, drop_remainder=False, **common_args
        ).map(to_float)
    return train_batches, validation_batches


def linear_eval(config, strategy, encoder, train, validation, info, size=None):
    """Linear evaluation of a frozen `encoder`; returns `(accuracy, LinearClassifier)`.

    SGD (momentum 0.9, cosine decay from `--eval_learning_rate`, no weight decay) for
    `--eval_epochs`, on cached features (`--eval_protocol=cached`) or on augmented views
    every epoch (`augmented`, the references' protocol).

    The random state is reset from `--seed` first, so the same encoder gives the same
    classifier and accuracy whatever ran before in the process: a run killed during linear
    evaluation and started again reports what the uninterrupted run would have.

    Without a validation split (`validation=None`) the classifier is trained the same way and
    the accuracy is `None`. (`kc.models.linear_evaluation` needs an evaluation split: it gets
    one training batch, whose accuracy is discarded.)
    """
    augmented = config.eval_protocol == "augmented"
    train_batches, validation_batches = eval_pipelines(
        config, train, validation, augment=augmented, size=size
    )
    keras.utils.set_random_seed(config.seed)  # as at the start of a run (`set_up`)
    batches_per_epoch = max(1, (info.num_examples or config.batch_size) // config.batch_size)
    with strategy.scope():
        schedule = keras.optimizers.schedules.CosineDecay(
            config.eval_learning_rate, decay_steps=config.eval_epochs * batches_per_epoch
        )
        accuracy, classifier = kc.models.linear_evaluation(
            encoder,
            train_batches,
            validation_batches if validation_batches is not None else train_batches.take(1),
            num_classes=info.num_classes,
            epochs=config.eval_epochs,
            optimizer=kc.optimizers.TorchSGD(schedule, momentum=0.9),
            # On cached features an epoch takes milliseconds: no line per epoch.
            verbose=2 if augmented else 0,
            cache_features=not augmented,
            batch_size=config.batch_size,
            seed=config.seed,
        )
    if validation_batches is None:
        logging.info("Linear classifier trained (%s); no validation split to measure it.",
                     config.eval_protocol)
        return None, classifier
    logging.info("Linear evaluation accuracy (%s): %.4f", config.eval_protocol, accuracy)
    return accuracy, classifier


def save_encoder(config, encoder):
    """Saves the pretrained encoder as `<model_dir>/encoder.keras` for `linear_eval.py`."""
    return save_keras(encoder, os.path.join(config.model_dir, "encoder.keras"))
