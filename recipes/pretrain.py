r"""Contrastive pretraining of any base with any add-ons, linear evaluation, export.

    python recipes/pretrain.py --base=simclr                  # SimCLR on the shipped sample
    python recipes/pretrain.py --base=supcon --queue_size=4096  # SupCon with a labelled queue
    python recipes/pretrain.py --base=moco --clsa --crops=multi  # MoCo-v2 + CLSA multi-crop
    python recipes/pretrain.py --base=byol --mixco             # BYOL + MixCo
    python recipes/pretrain.py --base=moco --clsa --mixco --batch_negatives --bn_splits=2

`--base` is `simclr`, `supcon`, `moco` or `byol`; `--clsa` (strong views, DDM loss) and
`--mixco` (mixed semi-positives) add their losses to any base. Each trainer argument has a
flag (`--temperature`, `--queue_size`, `--moco_momentum`, `--shuffle_bn`, `--bn_splits`,
`--batch_negatives`, `--symmetric`, `--clsa_weight`, `--clsa_temperature`, `--mixco_weight`,
`--mixco_temperature`, `--projection_dim`); left unset, it takes the trainer's default, and
setting one that the chosen base does not use is an error. The per-paper recipes
`supcon_cifar.py`, `clsa_cifar.py` and `mixco_cifar.py` are presets of this script: other
defaults, the same `run()`.

With `--probe` (the default) an online linear probe trains on detached features (for the
self-supervised bases the labels reach only the probe) and `probe_accuracy` is reported.
Prints progress bars, logs to TensorBoard under `--model_dir` (with a few augmented views),
checkpoints every epoch (a killed run started again with the same `--model_dir` resumes,
and a finished phase — pretraining, linear evaluation — is never repeated), records the
validation accuracy of the online probe after every epoch in `<model_dir>/curve.json`, and
ends with one JSON line (also written to `<model_dir>/result.json`): `base`, `clsa`, `mixco`,
the accuracies, `optimizer_steps`, the encoder path (`<model_dir>/encoder.keras`) and the
SavedModel export folder.

A folder dataset with `--validation_per_class=0` has no validation split: every image
pretrains, no validation curve is measured, the linear classifier is trained and exported,
and `linear_eval_accuracy` is `null`.
"""

import os

import recipe_flags  # noqa: F401  First: configures TensorFlow's allocator before it starts.
import builders
import keras
import recipe_config
from absl import app

import keras_contrast as kc


def run(config, pretrain_config, extra=None):
    """Pretrains, evaluates linearly, exports, and prints the JSON line (returned too).

    Args:
        config: the `RecipeConfig`.
        pretrain_config: the `PretrainConfig`.
        extra: more entries for the JSON line (a preset's own settings). Defaults to None.
    """
    p = pretrain_config
    strategy = builders.set_up(config)
    train, validation, info = builders.load_splits(config)
    size = builders.image_size(config, info)
    steps = builders.steps_per_epoch(config, info)
    shuffle_seed, view_seed, trainer_seed = kc.seeds.derive_seeds(config.seed, 3)
    # SupCon's loss and the probe need the labels; otherwise the trainer never sees them.
    with_labels = p.base == "supcon" or p.probe

    def make_train(input_context):
        dataset = kc.data.build_pipeline(
            train,
            batch_size=config.batch_size,
            view_fn=builders.build_views(p, size, view_seed),
            view_fn_batched=True,
            repeat=True,
            cache=config.cache,
            seed=shuffle_seed,
            input_context=input_context,
        )
        return dataset if with_labels else dataset.map(lambda views, labels: views)

    train_views = kc.data.distribute(strategy, make_train)
    # Phases: pretraining, linear evaluation, export. A finished phase leaves its model and a
    # marker (both written atomically) and is never run again: a run killed during linear
    # evaluation or export resumes there. A killed pretraining resumes from its last epoch
    # (`AtomicBackupAndRestore`); the backup is deleted only at the very end, so a missing or
    # damaged marker or encoder is made again from it without training again.
    pretrained_marker = os.path.join(config.model_dir, "pretrain_done.json")
    evaluated_marker = os.path.join(config.model_dir, "linear_eval_done.json")
    encoder_path = os.path.join(config.model_dir, "encoder.keras")
    classifier_path = os.path.join(config.model_dir, "linear_classifier.keras")
    pretrained = builders.read_json(pretrained_marker)
    encoder = None if pretrained is None else builders.load_keras(
        encoder_path, strategy, "encoder"
    )
    if encoder is None:
        with strategy.scope():
            model = builders.build_trainer(
                config, p, size=size, steps=steps, num_classes=info.num_classes,
                seed=trainer_seed,
            )
            model.compile(
                optimizer=builders.build_optimizer(config, steps), jit_compile=config.jit_compile
            )
        example = builders.first_views(make_train(None))
        views = example[0] if with_labels else example
        # One image batch per view kind (the first crop of CLSA's multi-crop query / strong).
        first = lambda v: v[0] if isinstance(v, (list, tuple)) else v  # noqa: E731
        summary = {"query": first(views["query"]), "key": views["key"]}
        if "strong" in views:
            summary["strong"] = first(views["strong"])
        callbacks = builders.callbacks(config, summary)
        if config.validation_curve and model.probe is not None:
            _, validation_batches = builders.eval_pipelines(config, train, validation, size=size)
            callbacks.append(
                builders.ValidationCurve(
                    lambda images: model(images, training=False)["probabilities"],
                    validation_batches,
                    os.path.join(config.model_dir, "curve.json"),
                )
            )
        if p.knn_monitor:
            memory, validation_batches = builders.eval_pipelines(
                config, train, validation, size=size
            )
            callbacks.append(builders.KNNCurve(memory, validation_batches, info.num_classes,
                                               os.path.join(config.model_dir, "knn_curve.json")))
        model.fit(train_views, epochs=config.epochs, steps_per_epoch=steps, callbacks=callbacks,
                  shuffle=False, verbose=builders.progress_verbosity())
        builders.save_encoder(config, model.encoder)
        pretrained = {
            "optimizer_steps": int(model.optimizer.iterations.numpy()),
            # The last epoch's training metrics (from the backup if no epoch was left).
            "metrics": builders.last_epoch_metrics(
                model.history.history if model.history else {}, callbacks[0],
                ("loss", "probe_accuracy"),
            ),
        }
        builders.write_json(pretrained_marker, pretrained)
        # Evaluate the saved encoder, as a run started again after this point does.
        with strategy.scope():
            encoder = keras.saving.load_model(encoder_path)
    evaluated = builders.read_json(evaluated_marker)
    classifier = None if evaluated is None else builders.load_keras(
        classifier_path, strategy, "linear classifier"
    )
    if classifier is not None:
        accuracy = evaluated["linear_eval_accuracy"]
    else:
        accuracy, classifier = builders.linear_eval(
            config, strategy, encoder, train, validation, info, size=size
        )
        builders.save_keras(classifier, classifier_path)
        builders.write_json(evaluated_marker, {"linear_eval_accuracy": accuracy})
    export_dir = kc.export.export_saved_model(classifier, config.export_dir, (size, size))
    result = {
        "recipe": config.recipe,
        "base": p.base,
        "clsa": p.clsa,
        "mixco": p.mixco,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "steps_per_epoch": steps,
        "optimizer_steps": pretrained["optimizer_steps"],
        "linear_eval_accuracy": accuracy,
        "eval_protocol": config.eval_protocol,
        "export_dir": export_dir,
        "encoder_path": encoder_path,
    }
    if p.clsa:
        result["crops"] = p.crops
    knn_curve = builders.read_json(os.path.join(config.model_dir, "knn_curve.json"))
    if p.knn_monitor and knn_curve:
        result["knn_accuracy"] = knn_curve[max(knn_curve, key=int)]
    result.update(pretrained["metrics"])
    result.update(extra or {})
    builders.write_json(os.path.join(config.model_dir, "result.json"), result)
    builders.remove_backup(config)
    return builders.report(result)


def main(argv):
    del argv
    config = recipe_config.config_from_flags("pretrain")
    run(config, recipe_config.pretrain_config_from_flags(config))


if __name__ == "__main__":
    app.run(main)
