r"""Semi-supervised Π-model on a few labels per class, with or without ImCLR pairing.

The standard CIFAR-10 benchmark keeps 4,000 labels (400 per class) and uses the rest of the
training split as unlabelled images; `keras_contrast.models.PiModel` minimises the
cross-entropy on the labelled part plus the ramped-up consistency between two augmented
passes over all images (Laine & Aila, 2017; weight 20 and ramp-up over the first 40 % of
training, as "Realistic evaluation of deep semi-supervised learning"). `--imclr` pairs the
images inside the Π-model (labels averaged on the labelled part), as ImCLR's semi-supervised
experiment does.

    python recipes/semisup_cifar.py                                  # Π-model, shipped sample
    python recipes/semisup_cifar.py --imclr                          # Π-model + ImCLR
    python recipes/semisup_cifar.py --dataset=folder:/tmp/cifar10 --labelled_per_class=400

The labelled images are the first `--labelled_per_class` of each class in the training
split's order (the same for every arm of a seed); `--unlabelled_dataset=stl10` takes
STL-10's `unlabelled` split from TFDS instead of the rest of the split. An epoch is one pass
over the unlabelled images. Training images are decoded into memory (CIFAR-sized data).
Ends with one JSON line: the validation accuracy and the export path.
"""

import os

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import builders
import numpy as np
import recipe_config
import tensorflow as tf
from absl import app
from absl import flags

import keras_contrast as kc

flags.DEFINE_integer("labelled_per_class", 400, "Labelled training images per class.")
flags.DEFINE_integer(
    "unlabelled_batch_size", None, "Unlabelled images per step (global); default: --batch_size."
)
flags.DEFINE_float("consistency_weight", 20.0, "Largest weight of the consistency term.")
flags.DEFINE_integer(
    "rampup_epochs", None, "Epochs of the consistency ramp-up; default: 40 % of --epochs."
)
flags.DEFINE_string(
    "unlabelled_dataset", None, "A TFDS dataset whose `unlabelled` split is the unlabelled "
    "data (e.g. stl10); default: the training split minus the labelled images."
)

FLAGS = flags.FLAGS

# Adam at 3e-4 for 100 labelled images per step, as the Realistic-evaluation reference,
# expressed per 256 examples (the recipes scale the rate by batch / 256).
DEFAULTS = {"imclr": False, "optimizer": "adamw", "learning_rate": 3e-4 * 256 / 100,
            "weight_decay": 0.0, "batch_size": 100}


def as_arrays(dataset):
    """`(uint8 images, int32 labels)` of a dataset of `(image, label)` pairs."""
    images, labels = [], []
    for image, label in dataset.batch(1024).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise ValueError("The training split is empty.")
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)


def split_labelled(labels, per_class, num_classes):
    """Indices of the first `per_class` images of each class, and of all the others."""
    counts = np.bincount(labels, minlength=num_classes)
    if per_class < 1 or counts.min() <= per_class:
        raise ValueError(
            "--labelled_per_class must be >= 1 and leave unlabelled images in every class "
            f"(the smallest class has {counts.min()} training images). Received: "
            f"--labelled_per_class={per_class}"
        )
    rank = np.zeros(len(labels), np.int64)
    seen = np.zeros(num_classes, np.int64)
    for i, label in enumerate(labels):
        rank[i] = seen[label]
        seen[label] += 1
    labelled = np.flatnonzero(rank < per_class)
    return labelled, np.flatnonzero(rank >= per_class)


def main(argv):
    del argv
    config = recipe_config.config_from_flags("semisup_cifar")
    unlabelled_batch = FLAGS.unlabelled_batch_size or config.batch_size
    if unlabelled_batch < 1:
        raise ValueError(f"--unlabelled_batch_size must be >= 1. Received: "
                         f"--unlabelled_batch_size={unlabelled_batch}")
    rampup = FLAGS.rampup_epochs
    if rampup is None:
        rampup = int(round(0.4 * config.epochs))
    if rampup < 0 or FLAGS.consistency_weight < 0:
        raise ValueError(
            "--rampup_epochs and --consistency_weight must be >= 0. Received: "
            f"--rampup_epochs={rampup}, --consistency_weight={FLAGS.consistency_weight}"
        )
    if FLAGS.imclr and FLAGS.axis == "channels" and config.model not in recipe_flags.CIFAR_RESNETS:
        raise ValueError("--axis=channels needs a CIFAR ResNet (a 6-channel input). Received: "
                         f"--model={config.model}")
    strategy = builders.set_up(config)
    train, validation, info = builders.load_splits(config)
    size = builders.image_size(config, info)
    images, labels = as_arrays(train)
    labelled, rest = split_labelled(labels, FLAGS.labelled_per_class, info.num_classes)
    if FLAGS.unlabelled_dataset:
        unlabelled_source, _ = kc.data.load(FLAGS.unlabelled_dataset, "unlabelled",
                                            data_dir=config.data_dir, image_size=(size, size))
        unlabelled_images, _ = as_arrays(unlabelled_source)
    else:
        unlabelled_images = images[rest]
    labelled_images, labelled_labels = images[labelled], labels[labelled]
    for name, count, batch in (("--batch_size", len(labelled_images), config.batch_size),
                               ("--unlabelled_batch_size", len(unlabelled_images),
                                unlabelled_batch)):
        if batch > count:
            raise ValueError(f"{name}={batch} is larger than the {count} images it draws from "
                             "(labelled or unlabelled): no full batch.")
    steps = config.steps_per_epoch or max(1, len(unlabelled_images) // unlabelled_batch)
    print(f"Semi-supervised split: {len(labelled_images)} labelled, {len(unlabelled_images)} "
          f"unlabelled images; {steps} steps per epoch", flush=True)
    augment_seed, pairing_seed, shuffle_seed = kc.seeds.derive_seeds(config.seed, 3)

    def resized(x):
        x = tf.cast(x, tf.float32)
        if tuple(x.shape[1:3]) != (size, size):
            x = tf.image.resize(x, [size, size], method="bilinear")
        return x

    def make_train(input_context):
        replicas = 1 if input_context is None else input_context.num_replicas_in_sync
        pipeline = 0 if input_context is None else input_context.input_pipeline_id
        seed = shuffle_seed + pipeline  # every worker draws its own batches

        def stream(tensors, count, batch):
            dataset = tf.data.Dataset.from_tensor_slices(tensors)
            dataset = dataset.shuffle(min(count, 50_000), seed=seed)
            return dataset.repeat().batch(batch // replicas, drop_remainder=True)

        pairs = tf.data.Dataset.zip((
            stream((labelled_images, labelled_labels), len(labelled_images), config.batch_size),
            stream(unlabelled_images, len(unlabelled_images), unlabelled_batch),
        ))
        return pairs.map(
            lambda lab, unl: ({"labelled": resized(lab[0]), "unlabelled": resized(unl)}, lab[1]),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).prefetch(tf.data.AUTOTUNE)

    train_batches = kc.data.distribute(strategy, make_train)
    input_shape = builders.paired_shape(size, FLAGS.axis) if FLAGS.imclr else (size, size, 3)

    def build_model():
        encoder = builders.build_encoder(config, input_shape[0], input_shape)
        classifier = kc.models.LinearClassifier(encoder, info.num_classes, freeze_encoder=False)
        classifier.build((None, *input_shape))
        pairing = (kc.layers.ImCLRPairing(axis=FLAGS.axis, seed=pairing_seed)
                   if FLAGS.imclr else None)
        model = kc.models.PiModel(
            classifier, consistency_weight=FLAGS.consistency_weight, rampup_epochs=rampup,
            augment=kc.models.pi_model_augmentation(seed=augment_seed), pairing=pairing,
        )
        model.compile(optimizer=builders.build_optimizer(config, steps),
                      jit_compile=config.jit_compile)
        return model

    with strategy.scope():
        model = build_model()
    _, validation_batches = builders.eval_pipelines(config, train, validation, size=size)
    trained_marker = os.path.join(config.model_dir, "train_done.json")
    model_path = os.path.join(config.model_dir, "pi_model.keras")
    trained = builders.read_json(trained_marker)
    saved = None if trained is None else builders.load_keras(model_path, strategy, "Π-model")
    if saved is None:
        example, _ = builders.first_views(make_train(None))
        callbacks = builders.callbacks(config, {"labelled": example["labelled"]})
        if config.validation_curve:
            callbacks.append(builders.ValidationCurve(
                lambda x: model(x, training=False), validation_batches,
                os.path.join(config.model_dir, "curve.json")))
        model.fit(train_batches, epochs=config.epochs, steps_per_epoch=steps,
                  callbacks=callbacks, shuffle=False, verbose=builders.progress_verbosity())
        builders.save_keras(model, model_path)
        trained = {"optimizer_steps": int(model.optimizer.iterations.numpy())}
        builders.write_json(trained_marker, trained)
    else:
        model = saved
    accuracy = builders.accuracy_of(lambda x: model(x, training=False), validation_batches)
    export_dir = kc.export.export_saved_model(model, config.export_dir, (size, size))
    result = {
        "recipe": "semisup_cifar",
        "imclr": FLAGS.imclr,
        "labelled": int(len(labelled_images)),
        "unlabelled": int(len(unlabelled_images)),
        "dataset": config.dataset,
        "epochs": config.epochs,
        "steps_per_epoch": steps,
        "optimizer_steps": trained["optimizer_steps"],
        "validation_accuracy": accuracy,
        "export_dir": export_dir,
    }
    builders.write_json(os.path.join(config.model_dir, "result.json"), result)
    builders.remove_backup(config)
    builders.report(result)


if __name__ == "__main__":
    recipe_flags.set_defaults(DEFAULTS)
    app.run(main)
