r"""Reproduction runner: every arm of an experiment, several seeds, tables and plots.

    python recipes/reproduce.py --list
    python recipes/reproduce.py --experiment=imclr_low_data --dataset=folder:/tmp/cifar10 \
        --validation_per_class=500 --seeds=3 --output_dir=/tmp/repro/imclr_low_data

Each (arm, seed) runs the arm's recipe (`imclr_cifar.py`, `supcon_cifar.py`, `pretrain.py`,
`clsa_cifar.py`, ...) in a subprocess with the experiment's flags, `--seed=<seed>`,
`--model_dir=<output_dir>/<arm>/seed_<seed>` and `--export_dir=.../export`: the same code
path as running the recipe by hand (the command is recorded). Outputs in `--output_dir`:

- `results.json`: `{"experiment", "baseline", "arms": {arm: {"seeds": {"0":
  {"validation_accuracy", "export_dir", "seconds", "command", "curve"}, ...}}}}`; each arm's
  final classifier (for self-supervised arms the linear probe on the frozen encoder) is
  exported with `keras_contrast.export.export_saved_model` to `export_dir`;
- `results.md`: per arm mean +- std over seeds, and the paired difference to the baseline
  arm (same seeds) with a 95 % Student-t interval; with `--robustness` (default) also the
  clean and mean corruption accuracy of each export (`robustness_eval.py` on
  `--robustness_images` held-out images, the corrupted sets shared by every run);
- `results.png`: validation accuracy per epoch (mean and min-max over seeds) and the final
  accuracies as bars with error bars.

Resumable: a finished (arm, seed) is skipped when the command runs again, and a run killed
halfway resumes inside the recipe (its `BackupAndRestore` checkpoints and phase markers).
`--override` appends flags to every arm (e.g. `--override=--epochs=1` for a smoke run).
"""

import os
import statistics

from absl import app
from absl import flags
from absl import logging

import reproduction

flags.DEFINE_enum("experiment", None, sorted(reproduction.EXPERIMENTS), "The experiment to run.")
flags.DEFINE_bool("list", False, "Print the experiments, their arms and minutes per seed.")
flags.DEFINE_string("dataset", "cifar10_sample", "Passed to every recipe (--dataset).")
flags.DEFINE_integer("validation_per_class", 500, "Passed to every recipe.")
flags.DEFINE_integer("seeds", 3, "Seeds 0 .. N-1 for every arm.")
flags.DEFINE_string("output_dir", None, "Where runs, results.json/.md/.png go.")
flags.DEFINE_multi_string("override", [], "Flags appended to every arm (e.g. --epochs=1).")
flags.DEFINE_list("arms", None, "Run only these arms (default: all).")
flags.DEFINE_bool(
    "report_only", False, "Only write results.md and results.png from the runs recorded in "
    "--output_dir/results.json (e.g. while or after a partial run); runs nothing."
)
flags.DEFINE_bool(
    "robustness", True, "Also measure each export's clean and mean corruption accuracy "
    "(recipes/robustness_eval.py: the 15 common corruptions, severities 1-5)."
)
flags.DEFINE_integer(
    "robustness_images", 1000, "Held-out images of the robustness evaluation (evenly spaced)."
)

FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.list:
        reproduction.list_experiments()
        return
    if FLAGS.experiment is None or not FLAGS.output_dir:
        raise ValueError(
            "--experiment and --output_dir are required (or --list). Received: "
            f"--experiment={FLAGS.experiment}, --output_dir={FLAGS.output_dir}"
        )
    if FLAGS.seeds < 1:
        raise ValueError(f"--seeds must be >= 1. Received: --seeds={FLAGS.seeds}")
    experiment = reproduction.EXPERIMENTS[FLAGS.experiment]
    arms = FLAGS.arms or list(experiment.arms)
    unknown = sorted(set(arms) - set(experiment.arms))
    if unknown:
        raise ValueError(
            f"--arms must be among {sorted(experiment.arms)}. Received unknown: {unknown}"
        )
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    results_path = os.path.join(FLAGS.output_dir, "results.json")
    if FLAGS.report_only:
        results = reproduction.read_results(results_path)
        write_reports(experiment, results)
        return
    results = {
        "experiment": FLAGS.experiment,
        "baseline": experiment.baseline,
        "dataset": FLAGS.dataset,
        "arms": {arm: {"seeds": {}} for arm in experiment.arms},
    }
    jobs = [(seed, arm) for seed in range(FLAGS.seeds) for arm in arms]
    durations = []
    for index, (seed, arm) in enumerate(jobs):
        remaining = len(jobs) - index
        eta = (
            f", about {statistics.fmean(durations) * remaining / 60:.0f} min left"
            if durations else ""
        )
        print(f"[{index + 1}/{len(jobs)}] {FLAGS.experiment}: arm {arm}, seed {seed}{eta}",
              flush=True)
        entry, skipped = reproduction.run_one(
            experiment, arm, seed, FLAGS.output_dir, dataset=FLAGS.dataset,
            validation_per_class=FLAGS.validation_per_class, override=FLAGS.override,
        )
        if not skipped:
            durations.append(entry["seconds"])
        took = "already done" if skipped else f"{entry['seconds'] / 60:.1f} min"
        print(f"    validation accuracy {entry['validation_accuracy']:.4f} ({took})", flush=True)
        if FLAGS.robustness:
            entry = reproduction.run_robustness(
                entry, arm, seed, FLAGS.output_dir, dataset=FLAGS.dataset,
                validation_per_class=FLAGS.validation_per_class,
                images=FLAGS.robustness_images,
            )
            print(f"    clean {entry['clean_accuracy']:.4f}, mean corruption accuracy "
                  f"{entry['mean_corruption_accuracy']:.4f} on {entry['robustness_images']} "
                  "held-out images", flush=True)
        results["arms"][arm]["seeds"][str(seed)] = entry
        reproduction.write_json(results_path, results)
    write_reports(experiment, results)
    logging.info("Wrote %s, results.md and results.png", results_path)


def write_reports(experiment, results):
    """results.md and results.png in --output_dir; prints the table."""
    table = reproduction.write_markdown(
        FLAGS.experiment, experiment, results, os.path.join(FLAGS.output_dir, "results.md")
    )
    reproduction.write_plot(FLAGS.experiment, experiment, results,
                            os.path.join(FLAGS.output_dir, "results.png"))
    print(table, flush=True)


if __name__ == "__main__":
    app.run(main)
