r"""Accuracy of an exported classifier under common corruptions (ImageNet-C / CIFAR-10-C).

    python recipes/robustness_eval.py --export_dir=saved_models/supcon_cifar \
        --dataset=folder:/tmp/cifar10 --validation_per_class=500 --max_images=1000

Loads the SavedModel (`serving_default`, as `keras_contrast.export.export_saved_model` writes
it; nothing of keras_contrast is needed to serve it), takes the held-out split of `--dataset`
(the folder's last `--validation_per_class` images per class, the sample's validation split,
or a TFDS dataset's `test` split), at most `--max_images` of them evenly spaced in the
split's order, and measures the accuracy on the clean images and under every corruption and
severity: applied on the fly (`keras_contrast.evaluation.corruption_accuracy`), or, with
`--dataset=cifar10` and TFDS' `cifar10_corrupted` prepared in `--data_dir`, read from the
published CIFAR-10-C sets (`keras_contrast.evaluation.cifar10_corrupted_accuracy`; the same
evenly spaced images of each set). `--corruption_source` chooses: `auto` (default: CIFAR-10-C
when it is there), `on_the_fly` or `cifar10_corrupted`.
Writes to `--output_dir` (default: `<export_dir>/robustness`):

- `robustness.json`: `{"export_dir", "dataset", "images", "corruption_source",
  "clean_accuracy", "corruption_accuracy": {corruption: {severity: accuracy}},
  "mean_corruption_accuracy"}`;
- `robustness.png`: a heat map of accuracy per corruption and severity;
- `cache.json`: each (corruption, severity) as soon as it is measured on the fly (a killed
  run resumes).

Prints the table (corruption x severity, in %) and ends with the JSON line.
"""

import json
import os
import sys

import recipe_flags  # noqa: F401 (the shared flags: --export_dir, --dataset, --seed, ...)
from absl import app
from absl import flags

# Shared flags used here: --export_dir (the SavedModel to evaluate, required), --dataset,
# --validation_per_class, --data_dir, --batch_size (images per model call), --seed (of the
# random corruptions).
flags.DEFINE_integer("max_images", 1000, "At most this many held-out images (0: all).")
flags.DEFINE_string(
    "corruptions", "common", "common (the benchmark's 15), all (with its 4 extra ones), or a "
    "comma-separated list of names (gaussian_noise,fog,...)."
)
flags.DEFINE_list("severities", ["1", "2", "3", "4", "5"], "Severities in [1, 5].")
flags.DEFINE_string("output_dir", None, "Outputs; default: <export_dir>/robustness.")
flags.DEFINE_string(
    "corrupted_dir", None, "Keep the corrupted image sets here, for the next model evaluated "
    "on the same images (default: not kept)."
)

CORRUPTION_SOURCES = ("auto", "on_the_fly", "cifar10_corrupted")
flags.DEFINE_enum(
    "corruption_source", "auto", CORRUPTION_SOURCES,
    "Where the corrupted images come from: on_the_fly (imagecorruptions), cifar10_corrupted "
    "(TFDS' prepared CIFAR-10-C; needs --dataset=cifar10), or auto (cifar10_corrupted when "
    "--dataset=cifar10, a 32 x 32 export and the sets prepared in --data_dir, else on the "
    "fly)."
)

FLAGS = flags.FLAGS


def load_held_out(dataset, validation_per_class, data_dir, max_images, image_size):
    """`(uint8 images [N, H, W, 3], int32 labels [N])` of the held-out split, resized."""
    import numpy as np

    import keras_contrast as kc

    if dataset == "cifar10_sample":
        source, _ = kc.data.load(dataset, "validation", image_size=image_size)
    elif dataset.startswith("folder:"):
        if validation_per_class < 1:
            raise ValueError(
                "A folder's held-out split needs --validation_per_class >= 1. Received: "
                f"--validation_per_class={validation_per_class}"
            )
        source, _ = kc.data.load(dataset, "validation", validation_per_class=validation_per_class,
                                 image_size=image_size)
    else:
        source, _ = kc.data.load(dataset, "test", data_dir=data_dir, image_size=image_size)
    images, labels = [], []
    for image, label in source.batch(1024).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    images, labels = np.concatenate(images), np.concatenate(labels).astype(np.int32)
    keep = kc.evaluation.evenly_spaced(len(images), max_images)
    return images[keep], labels[keep]


def resolve_corruption_source(source, dataset, image_size, corruptions, severities, data_dir):
    """`"on_the_fly"` or `"cifar10_corrupted"` for `--corruption_source=source` and an export
    taking `image_size` images."""
    import keras_contrast as kc

    if source not in CORRUPTION_SOURCES:
        raise ValueError(f"--corruption_source must be one of {CORRUPTION_SOURCES}. "
                         f"Received: --corruption_source={source}")
    if source == "cifar10_corrupted":
        if dataset != "cifar10":
            raise ValueError(
                "--corruption_source=cifar10_corrupted reads CIFAR-10-C, the CIFAR-10 test "
                f"images corrupted: it needs --dataset=cifar10. Received: --dataset={dataset}"
            )
        if tuple(image_size) != (32, 32):
            raise ValueError(
                "--corruption_source=cifar10_corrupted feeds CIFAR-10-C's 32 x 32 images: it "
                f"needs an export taking 32 x 32 images. Received an export taking "
                f"{image_size[0]} x {image_size[1]}"
            )
    if source == "auto":
        prepared = (
            dataset == "cifar10"
            and tuple(image_size) == (32, 32)
            and kc.evaluation.cifar10_corrupted_prepared(corruptions, severities, data_dir)
        )
        return "cifar10_corrupted" if prepared else "on_the_fly"
    return source


def export_image_size(served):
    """`(height, width)` of the `images` input of a SavedModel's `serving_default`."""
    spec = served.signatures["serving_default"].structured_input_signature[1]["images"]
    return int(spec.shape[1]), int(spec.shape[2])


def evaluate_export(export_dir, dataset, *, validation_per_class=500, data_dir=None,
                    max_images=1000, corruptions="common", severities=(1, 2, 3, 4, 5),
                    batch_size=256, seed=0, output_dir=None, corrupted_dir=None, verbose=1,
                    corruption_source="auto"):
    """Clean and corruption accuracy of a SavedModel; writes JSON and the heat map.

    Returns the `robustness.json` dict. `corrupted_dir` keeps the corrupted sets for the
    next model evaluated on the same images (the reproduction runner shares one);
    `corruption_source` is `--corruption_source`. When CIFAR-10-C is read, `seed` and
    `corrupted_dir` play no part (the corrupted sets are CIFAR-10-C's own).
    """
    import tensorflow as tf

    import keras_contrast as kc

    output_dir = output_dir or os.path.join(export_dir, "robustness")
    os.makedirs(output_dir, exist_ok=True)
    served = tf.saved_model.load(export_dir)
    signature = served.signatures["serving_default"]

    def predict(images):
        return signature(images=tf.constant(images, tf.float32))["probabilities"].numpy()

    image_size = export_image_size(served)
    source = resolve_corruption_source(corruption_source, dataset, image_size, corruptions,
                                       severities, data_dir)
    images, labels = load_held_out(dataset, validation_per_class, data_dir, max_images,
                                   image_size)
    clean = kc.evaluation.accuracy(predict, images, labels, batch_size)
    if source == "cifar10_corrupted":
        by_corruption = kc.evaluation.cifar10_corrupted_accuracy(
            predict, corruptions=corruptions, severities=severities, data_dir=data_dir,
            max_images=max_images, batch_size=batch_size, verbose=verbose,
        )
    else:
        by_corruption = kc.evaluation.corruption_accuracy(
            predict, images, labels, corruptions=corruptions, severities=severities,
            batch_size=batch_size, seed=seed, cache_path=os.path.join(output_dir, "cache.json"),
            corrupted_dir=corrupted_dir, verbose=verbose,
        )
    mean = by_corruption.pop("mean")
    result = {
        "export_dir": export_dir,
        "dataset": dataset,
        "images": int(len(images)),
        "corruption_source": source,
        "clean_accuracy": clean,
        "corruption_accuracy": {c: {str(s): a for s, a in by_severity.items()}
                                for c, by_severity in by_corruption.items()},
        "mean_corruption_accuracy": mean,
    }
    with open(os.path.join(output_dir, "robustness.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_heatmap(result, os.path.join(output_dir, "robustness.png"))
    return result


def table(result):
    """Markdown table: one row per corruption, one column per severity, accuracies in %."""
    corruption_accuracy = result["corruption_accuracy"]
    severities = list(next(iter(corruption_accuracy.values())))
    lines = ["| corruption | " + " | ".join(f"severity {s}" for s in severities) + " | mean |",
             "|---|" + "---:|" * (len(severities) + 1)]
    for corruption, by_severity in corruption_accuracy.items():
        values = [by_severity[s] for s in severities]
        lines.append(f"| {corruption} | " + " | ".join(f"{100 * v:.1f}" for v in values)
                     + f" | {100 * sum(values) / len(values):.1f} |")
    lines.append(f"| **clean** | {100 * result['clean_accuracy']:.1f} |"
                 + " |" * len(severities))
    lines.append(f"| **mean corruption** | {100 * result['mean_corruption_accuracy']:.1f} |"
                 + " |" * len(severities))
    return "\n".join(lines)


def write_heatmap(result, path):
    """Accuracy per corruption (rows) and severity (columns), with the values written in."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    from matplotlib import pyplot as plt

    corruptions = list(result["corruption_accuracy"])
    severities = list(result["corruption_accuracy"][corruptions[0]])
    values = np.array([[result["corruption_accuracy"][c][s] for s in severities]
                       for c in corruptions]) * 100
    figure, axes = plt.subplots(figsize=(1.1 * len(severities) + 3, 0.35 * len(corruptions) + 1.5))
    image = axes.imshow(values, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    axes.set_xticks(range(len(severities)), [f"severity {s}" for s in severities])
    axes.set_yticks(range(len(corruptions)), corruptions)
    for i in range(len(corruptions)):
        for j in range(len(severities)):
            axes.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center",
                      color="white" if values[i, j] < 50 else "black", fontsize=8)
    axes.set_title(f"accuracy (%) under corruption; clean {100 * result['clean_accuracy']:.1f}, "
                   f"mean {100 * result['mean_corruption_accuracy']:.1f}")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def parse_corruptions(value):
    if value in ("common", "all"):
        return value
    return [name.strip() for name in value.split(",") if name.strip()]


def parse_severities(values):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ValueError(
            f"--severities must be ints in [1, 5]. Received: --severities={','.join(values)}"
        ) from None


def main(argv):
    del argv
    if not FLAGS.export_dir:
        raise ValueError("--export_dir is required (a SavedModel of export_saved_model).")
    if not os.path.isdir(FLAGS.export_dir):
        raise ValueError(f"--export_dir must be a SavedModel folder. Received: "
                         f"--export_dir={FLAGS.export_dir}")
    if FLAGS.max_images < 0:
        raise ValueError(f"--max_images must be >= 0 (0: all). Received: "
                         f"--max_images={FLAGS.max_images}")
    result = evaluate_export(
        FLAGS.export_dir, FLAGS.dataset, validation_per_class=FLAGS.validation_per_class,
        data_dir=FLAGS.data_dir, max_images=FLAGS.max_images,
        corruptions=parse_corruptions(FLAGS.corruptions),
        severities=parse_severities(FLAGS.severities), batch_size=FLAGS.batch_size,
        seed=FLAGS.seed, output_dir=FLAGS.output_dir, corrupted_dir=FLAGS.corrupted_dir,
        verbose=1 if sys.stdout.isatty() else 0, corruption_source=FLAGS.corruption_source,
    )
    print(table(result), flush=True)
    print(json.dumps({k: v for k, v in result.items() if k != "corruption_accuracy"},
                     sort_keys=True), flush=True)


if __name__ == "__main__":
    recipe_flags.set_defaults({"seed": 0, "batch_size": 256})
    app.run(main)
