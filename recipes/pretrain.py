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
checkpoints every epoch (a killed run started again with the same `--model_dir` resumes), and
ends with one JSON line: `base`, `clsa`, `mixco`, the accuracies, `optimizer_steps`, the
encoder path (`<model_dir>/encoder.keras`) and the SavedModel export folder.
"""

import recipe_flags  # noqa: F401  First: configures TensorFlow's allocator before it starts.
import builders
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
    with strategy.scope():
        model = builders.build_trainer(
            config, p, size=size, steps=steps, num_classes=info.num_classes, seed=trainer_seed
        )
        model.compile(
            optimizer=builders.build_optimizer(config, steps), jit_compile=config.jit_compile
        )

    example = builders.first_views(make_train(None))
    views = example[0] if with_labels else example
    summary = {"query": views["query"], "key": views["key"]}
    if "strong" in views:
        strong = views["strong"]
        summary["strong"] = strong[0] if isinstance(strong, (list, tuple)) else strong
    model.fit(
        train_views,
        epochs=config.epochs,
        steps_per_epoch=steps,
        callbacks=builders.callbacks(config, summary),
    )
    history = model.history.history if model.history else {}

    encoder_path = builders.save_encoder(config, model.encoder)
    accuracy, classifier = builders.linear_eval(
        config, strategy, model.encoder, train, validation, info
    )
    export_dir = kc.export.export_saved_model(classifier, config.export_dir, (size, size))
    result = {
        "recipe": config.recipe,
        "base": p.base,
        "clsa": p.clsa,
        "mixco": p.mixco,
        "dataset": config.dataset,
        "epochs": config.epochs,
        "steps_per_epoch": steps,
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "linear_eval_accuracy": accuracy,
        "export_dir": export_dir,
        "encoder_path": encoder_path,
    }
    if p.clsa:
        result["crops"] = p.crops
    # The last epoch's training metrics (absent when a resumed run had no epoch left).
    for name in ("loss", "probe_accuracy"):
        if history.get(name):
            result[name] = float(history[name][-1])
    result.update(extra or {})
    return builders.report(result)


def main(argv):
    del argv
    config = recipe_config.config_from_flags("pretrain")
    run(config, recipe_config.pretrain_config_from_flags(config))


if __name__ == "__main__":
    app.run(main)
