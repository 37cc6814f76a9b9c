r"""ImCLR: supervised cross-entropy on pairs of concatenated images (or the plain baseline).

ImCLR changes only the input pipeline: each training input is two images side by side and
its label the mean of their one-hot labels. The baseline is the same script with
`--noimclr`; `--cutmix` and `--randaugment` add keras core augmentations and `--autoaugment`
the library's AutoAugment (+ Cutout) to test ImCLR's complementarity claims, `--train_fraction=0.05` its low-data claim.

    python recipes/imclr_cifar.py                      # ImCLR on the shipped sample
    python recipes/imclr_cifar.py --noimclr            # the cross-entropy baseline
    python recipes/imclr_cifar.py --dataset=folder:/tmp/cifar10 --epochs=30 --width=32

At inference the classifier self-pairs its input (`ImCLRClassifier`), inside the exported
SavedModel too, so clients send ordinary single images.
"""

import os

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import builders
import keras
import recipe_config
import tensorflow as tf
from absl import app
from absl import flags

import keras_contrast as kc

flags.DEFINE_bool("cutmix", False, "Apply keras.layers.CutMix to the training batches.")
flags.DEFINE_bool("randaugment", False, "Apply keras.layers.RandAugment to training images.")
flags.DEFINE_bool(
    "autoaugment", False,
    "Apply keras_contrast.layers.AutoAugment (the CIFAR-10 policy, then Cutout of "
    "--autoaugment_cutout px) to training images, after the flip and translation.")
flags.DEFINE_integer(
    "autoaugment_cutout", 16,
    "Cutout side (pixels) after AutoAugment, as the AutoAugment paper's CIFAR recipe; "
    "0 for none. Only with --autoaugment.")

FLAGS = flags.FLAGS


paired_shape = builders.paired_shape


def main(argv):
    del argv
    config = recipe_config.config_from_flags("imclr_cifar")
    cifar_resnet = config.model in recipe_flags.CIFAR_RESNETS
    if FLAGS.imclr and FLAGS.axis == "channels" and not cifar_resnet:
        raise ValueError(
            "--axis=channels needs a 6-channel input, which keras.applications backbones do "
            f"not take. Use a CIFAR ResNet or --axis=width. Received: --model={config.model}"
        )
    strategy = builders.set_up(config)
    train, validation, info = builders.load_splits(config)
    size = builders.image_size(config, info)
    steps = builders.steps_per_epoch(config, info)

    # One independent seed per random layer: layers seeded alike draw the same numbers.
    (flip_seed, translation_seed, randaugment_seed, cutmix_seed, pairing_seed, shuffle_seed,
     autoaugment_seed) = kc.seeds.derive_seeds(config.seed, 7)
    if FLAGS.autoaugment_cutout < 0:
        raise ValueError("--autoaugment_cutout must be >= 0. Received: "
                         f"--autoaugment_cutout={FLAGS.autoaugment_cutout}")
    augment = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=flip_seed),
            keras.layers.RandomTranslation(
                0.125, 0.125, fill_mode="reflect", seed=translation_seed
            ),
        ]
        + ([keras.layers.RandAugment(value_range=(0, 255), seed=randaugment_seed)]
           if FLAGS.randaugment else [])
        + ([kc.layers.AutoAugment("cifar10", cutout_size=FLAGS.autoaugment_cutout,
                                  seed=autoaugment_seed)]
           if FLAGS.autoaugment else [])
    )
    cutmix = keras.layers.CutMix(seed=cutmix_seed) if FLAGS.cutmix else None
    pairing = (
        kc.layers.ImCLRPairing(num_classes=info.num_classes, axis=FLAGS.axis, seed=pairing_seed)
        if FLAGS.imclr else None
    )

    def train_batch(images, labels):
        images = tf.cast(images, tf.float32)
        if tuple(images.shape[1:3]) != (size, size):  # --image_size on data of another size
            images = tf.image.resize(images, [size, size], method="bilinear")
        images = augment(images, training=True)
        batch = {"images": images, "labels": tf.one_hot(labels, info.num_classes)}
        if cutmix is not None:
            batch = cutmix(batch, training=True)
        if pairing is not None:
            batch = pairing(batch, training=True)
        return batch["images"], batch["labels"]

    def make_train(input_context):
        dataset = kc.data.build_pipeline(
            train,
            batch_size=config.batch_size,
            repeat=True,
            cache=config.cache,
            seed=shuffle_seed,
            input_context=input_context,
        )
        return dataset.map(train_batch, num_parallel_calls=tf.data.AUTOTUNE)

    train_batches = kc.data.distribute(strategy, make_train)
    input_shape = paired_shape(size, FLAGS.axis) if FLAGS.imclr else (size, size, 3)
    with strategy.scope():
        encoder = builders.build_encoder(config, input_shape[0], input_shape)
        classifier = kc.models.LinearClassifier(
            encoder, info.num_classes, freeze_encoder=False
        )
        classifier.build((None, *input_shape))
        classifier.compile(
            optimizer=builders.build_optimizer(config, steps),
            loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
            jit_compile=config.jit_compile,
        )
        model = (
            kc.models.ImCLRClassifier(classifier, axis=FLAGS.axis) if FLAGS.imclr else classifier
        )

    _, validation_batches = builders.eval_pipelines(config, train, validation, size=size)
    # Phases as in pretrain.py: a finished training is never repeated (marker + saved
    # classifier); a killed training resumes from its last epoch (AtomicBackupAndRestore).
    trained_marker = os.path.join(config.model_dir, "train_done.json")
    classifier_path = os.path.join(config.model_dir, "classifier.keras")
    trained = builders.read_json(trained_marker)
    saved = None if trained is None else builders.load_keras(
        classifier_path, strategy, "classifier"
    )
    if saved is None:
        example_images, _ = builders.first_views(make_train(None))
        callbacks = builders.callbacks(config, {"train_inputs": example_images})
        if config.validation_curve:
            callbacks.append(
                builders.ValidationCurve(
                    lambda images: model(images, training=False),
                    validation_batches,
                    os.path.join(config.model_dir, "curve.json"),
                )
            )
        classifier.fit(
            train_batches, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks,
            shuffle=False, verbose=builders.progress_verbosity(),
        )
        builders.save_keras(classifier, classifier_path)
        trained = {"optimizer_steps": int(classifier.optimizer.iterations.numpy())}
        builders.write_json(trained_marker, trained)
    else:
        classifier = saved
        with strategy.scope():
            model = (
                kc.models.ImCLRClassifier(classifier, axis=FLAGS.axis)
                if FLAGS.imclr else classifier
            )
    accuracy = builders.accuracy_of(lambda images: model(images, training=False),
                                    validation_batches)
    export_dir = kc.export.export_saved_model(model, config.export_dir, (size, size))
    result = {
        "recipe": "imclr_cifar",
        "imclr": FLAGS.imclr,
        "cutmix": FLAGS.cutmix,
        "randaugment": FLAGS.randaugment,
        "autoaugment": FLAGS.autoaugment,
        "train_fraction": config.train_fraction,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "steps_per_epoch": steps,
        "optimizer_steps": trained["optimizer_steps"],
        "validation_accuracy": accuracy,
        "export_dir": export_dir,
    }
    builders.write_json(os.path.join(config.model_dir, "result.json"), result)
    builders.remove_backup(config)  # only now: a kill before this resumes without retraining
    builders.report(result)


if __name__ == "__main__":
    recipe_flags.set_defaults({"imclr": True})
    app.run(main)
