r"""SupCon (or SimCLR) pretraining, then linear evaluation, then a SavedModel export.

Runs offline on the CIFAR-10 sample shipped with the package:

    python recipes/supcon_cifar.py --strategy=mirrored

Real CIFAR-10 from an ImageFolder copy, holding out 500 images per class:

    python recipes/supcon_cifar.py --dataset=folder:/tmp/cifar10 --epochs=100 \
        --batch_size=512 --width=64 --strategy=mirrored

Prints progress bars, logs to TensorBoard under --model_dir (with a few augmented views),
checkpoints every epoch (a killed run started again with the same --model_dir resumes), and
ends with one JSON line: the accuracies and the export path.
"""

from absl import app
from absl import flags

import common
import keras_contrast as kc

flags.DEFINE_enum("method", "supcon", ["supcon", "simclr"], "SupCon uses labels; SimCLR not.")
flags.DEFINE_integer("projection_dim", 128, "Output size of the projection head.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = common.config_from_flags("supcon_cifar")
    strategy = common.set_up(config)
    train, validation, info = common.load_splits(config)
    size = common.image_size(config, info)
    steps = common.steps_per_epoch(config, info)
    supervised = FLAGS.method == "supcon"

    def make_train(input_context):
        views = common.view_maker(["weak", "weak"], size, config.seed)
        dataset = kc.data.build_pipeline(
            train,
            batch_size=config.batch_size,
            view_fn=views,
            view_fn_batched=True,
            repeat=True,
            cache=config.cache,
            seed=config.seed,
            input_context=input_context,
        )
        # SimCLR never sees labels: the dataset yields views only.
        return dataset if supervised else dataset.map(lambda views, labels: views)

    train_views = kc.data.distribute(strategy, make_train)

    with strategy.scope():
        model = kc.models.SupConModel(
            encoder=common.build_encoder(config, size),
            head=kc.models.ProjectionHead(output_dim=FLAGS.projection_dim),
            loss=kc.losses.SupConLoss(temperature=config.temperature),
            num_classes=info.num_classes if supervised else None,
        )
        model.build((None, size, size, 3))
        model.compile(
            optimizer=common.build_optimizer(config, steps), jit_compile=config.jit_compile
        )

    example = common.first_views(make_train(None))
    example_views = example[0] if supervised else example
    model.fit(
        train_views,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=common.callbacks(
            config, {f"view_{i}": example_views[:, i] for i in range(example_views.shape[1])}
        ),
    )
    history = model.history.history if model.history else {}

    encoder_path = common.save_encoder(config, model.encoder)
    accuracy, classifier = common.linear_eval(config, strategy, model.encoder, train,
                                              validation, info)
    export_dir = kc.export.export_saved_model(classifier, config.export_dir, (size, size))
    result = {
        "recipe": "supcon_cifar",
        "method": FLAGS.method,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "steps_per_epoch": steps,
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "linear_eval_accuracy": accuracy,
        "export_dir": export_dir,
        "encoder_path": encoder_path,
    }
    if "classifier_accuracy" in history:
        result["joint_classifier_accuracy"] = float(history["classifier_accuracy"][-1])
    common.report(result)


if __name__ == "__main__":
    app.run(main)
