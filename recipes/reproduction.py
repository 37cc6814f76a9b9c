"""Experiments of the reproduction runner, and its statistics, tables and plots.

No flags here (`reproduce.py` has them), so tests and other tools can import it.
"""

import dataclasses
import json
import math
import os
import statistics
import subprocess
import sys
import time

RECIPES_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment: arms (recipe + flags), the baseline arm, and what the paper claims."""

    description: str
    claim: str
    baseline: str
    arms: dict  # name -> (recipe script, [flags])
    common: tuple = ()
    # Measured minutes per seed (all arms) on a 2-core CPU; None until measured.
    minutes_per_seed: float = None


# Budgets are sized for the 2-core CPU of the project machines (CIFAR ResNet-18 at width 16):
# each experiment's arms take at most ~40 minutes per seed, so 3 seeds fit one session.
_CE_FLAGS = ("--noimclr",)
EXPERIMENTS = {
    "imclr_low_data": Experiment(
        description="ImCLR vs cross-entropy on 5 % of the training split",
        claim="ImCLR about +2 points over cross-entropy down to 5 % of the data",
        baseline="ce",
        arms={
            "ce": ("imclr_cifar.py", list(_CE_FLAGS)),
            "imclr": ("imclr_cifar.py", ["--imclr", "--axis=width"]),
        },
        common=("--train_fraction=0.05", "--epochs=60", "--batch_size=64",
                "--learning_rate=0.4", "--weight_decay=5e-4"),
        minutes_per_seed=30,  # measured: 3 seeds on the 2-core CPU
    ),
    "supcon_vs_ce": Experiment(
        description="SupCon and SimCLR (linear probe) vs cross-entropy, 20 % of the split",
        claim="SupCon >= cross-entropy; labels help SupCon a lot over SimCLR",
        baseline="ce",
        arms={
            "ce": ("imclr_cifar.py", list(_CE_FLAGS) + ["--learning_rate=0.4"]),
            "supcon": ("supcon_cifar.py", ["--method=supcon", "--learning_rate=0.5"]),
            "simclr": ("supcon_cifar.py", ["--method=simclr", "--temperature=0.5",
                                           "--learning_rate=0.5"]),
        },
        common=("--train_fraction=0.2", "--epochs=15", "--batch_size=128",
                "--weight_decay=1e-4"),
        minutes_per_seed=25,  # measured: 3 seeds on the 2-core CPU
    ),
    "mixco": Experiment(
        description="MixCo on SimCLR with a small encoder (width 8), 20 % of the split",
        claim="MixCo's gain is largest with small models and short training",
        baseline="simclr",
        arms={
            "simclr": ("pretrain.py", ["--base=simclr"]),
            "simclr_mixco": ("pretrain.py", ["--base=simclr", "--mixco",
                                             "--mixco_temperature=0.5"]),
        },
        common=("--train_fraction=0.2", "--epochs=15", "--batch_size=128", "--width=8",
                "--learning_rate=0.5", "--weight_decay=1e-4"),
        minutes_per_seed=30,  # measured: 3 seeds on the 2-core CPU
    ),
    "clsa": Experiment(
        description="CLSA (single strong crop) vs MoCo-v2, 20 % of the split",
        claim="CLSA's stronger views and DDM improve MoCo-v2's linear accuracy",
        baseline="moco",
        arms={
            # The same base as clsa_cifar.py (batch keys as negatives too): only CLSA differs.
            "moco": ("pretrain.py", ["--base=moco", "--batch_negatives"]),
            "clsa": ("clsa_cifar.py", ["--crops=single"]),
        },
        common=("--train_fraction=0.2", "--epochs=12", "--batch_size=128",
                "--queue_size=4096", "--learning_rate=0.06", "--weight_decay=5e-4"),
        minutes_per_seed=31,  # measured: seed 2 alone (seeds 0-1: 49 beside tests)
    ),
    "imclr_autoaugment": Experiment(
        description="ImCLR with AutoAugment (CIFAR-10 policy + Cutout 16) on 20 % of the split",
        claim="ImCLR and AutoAugment are complementary (ImCLR adds to AutoAugment's gain)",
        baseline="ce_autoaugment",
        arms={
            "ce_autoaugment": ("imclr_cifar.py", list(_CE_FLAGS) + ["--autoaugment"]),
            "imclr_autoaugment": ("imclr_cifar.py", ["--imclr", "--axis=width",
                                                     "--autoaugment"]),
        },
        common=("--train_fraction=0.2", "--epochs=15", "--batch_size=128",
                "--learning_rate=0.4", "--weight_decay=5e-4"),
    ),
    "pi_model": Experiment(
        description="Semi-supervised Π-model with and without ImCLR, 400 labels per class",
        claim="ImCLR adds about +2 points to the Π-model with 4,000 CIFAR-10 labels",
        baseline="pi",
        arms={
            "pi": ("semisup_cifar.py", ["--noimclr"]),
            "pi_imclr": ("semisup_cifar.py", ["--imclr", "--axis=width"]),
        },
        # 1,000 steps of 100 labelled + 100 unlabelled images (two passes each).
        common=("--labelled_per_class=400", "--epochs=10", "--steps_per_epoch=100",
                "--batch_size=100"),
        minutes_per_seed=37,  # measured: seed 2 (18 + 19; seeds 0-1 shared the machine)
    ),
}


# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201,
         2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074,
         2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(degrees_of_freedom):
    """The 0.975 quantile of Student's t (1.96 beyond 30 degrees of freedom)."""
    if degrees_of_freedom < 1:
        raise ValueError(f"Need >= 1 degree of freedom. Received: {degrees_of_freedom}")
    return _T975[degrees_of_freedom - 1] if degrees_of_freedom <= 30 else 1.96


def summarize(values):
    """`(mean, sample std)` of a list (std 0 for one value)."""
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_difference(arm, baseline):
    """Mean paired difference `arm - baseline` over common seeds and its 95 % t interval.

    Args:
        arm, baseline: `{seed: accuracy}`.

    Returns:
        `(mean, low, high, n)`; the interval is `None, None` with fewer than 2 pairs.
    """
    seeds = sorted(set(arm) & set(baseline))
    diffs = [arm[s] - baseline[s] for s in seeds]
    if not diffs:
        return None, None, None, 0
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, None, None, 1
    half = t_quantile_975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return mean, mean - half, mean + half, len(diffs)


def run_command(experiment, arm, seed, run_dir, dataset, validation_per_class, override=()):
    """The recipe command of one (arm, seed): experiment flags, then `override`."""
    script, arm_flags = experiment.arms[arm]
    return [
        sys.executable,
        os.path.join(RECIPES_DIR, script),
        f"--dataset={dataset}",
        f"--validation_per_class={validation_per_class}",
        *experiment.common,
        *arm_flags,
        f"--seed={seed}",
        f"--model_dir={run_dir}",
        f"--export_dir={os.path.join(run_dir, 'export')}",
        *override,
    ]


def _read(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_results(path):
    """The runner's results.json, or a `ValueError` naming the path when there is none."""
    results = _read(path)
    if results is None:
        raise ValueError(f"No results to report: {path} is missing or unreadable.")
    return results


def write_json(path, value):
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
    os.replace(temporary, path)


def accuracy_of(result):
    """The validation accuracy a recipe reports (linear probe for self-supervised arms)."""
    for key in ("validation_accuracy", "linear_eval_accuracy"):
        if key in result:
            return float(result[key])
    raise ValueError(f"The recipe's result has no accuracy. Received keys: {sorted(result)}")


def run_one(experiment, arm, seed, output_dir, **command_args):
    """Runs (or skips, when finished) one arm and seed; returns `(entry, skipped)`."""
    run_dir = os.path.join(output_dir, arm, f"seed_{seed}")
    entry_path = os.path.join(run_dir, "runner.json")
    entry = _read(entry_path)
    if entry is not None:
        return entry, True
    os.makedirs(run_dir, exist_ok=True)
    command = run_command(experiment, arm, seed, run_dir, **command_args)
    start = time.time()
    with open(os.path.join(run_dir, "log.txt"), "a") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=RECIPES_DIR)
    seconds = time.time() - start
    result = _read(os.path.join(run_dir, "result.json"))
    if process.returncode != 0 or result is None:
        raise RuntimeError(
            f"{arm} seed {seed} failed (exit code {process.returncode}); see "
            f"{os.path.join(run_dir, 'log.txt')}. Command: {' '.join(command)}"
        )
    previous = _read(os.path.join(run_dir, "seconds.json")) or {"seconds": 0.0}
    seconds += previous["seconds"]  # a resumed run adds the time of its earlier attempts
    curve = _read(os.path.join(run_dir, "curve.json")) or {}
    entry = {
        "validation_accuracy": accuracy_of(result),
        "export_dir": result["export_dir"],
        "seconds": seconds,
        "command": " ".join(command),
        "curve": {str(int(k)): v for k, v in curve.items()},  # epoch (from 1) -> accuracy
    }
    write_json(entry_path, entry)
    return entry, False


def run_robustness(entry, arm, seed, output_dir, *, dataset, validation_per_class, images):
    """Clean and mean corruption accuracy of the (arm, seed)'s export, added to its entry.

    Runs `robustness_eval.py` in a subprocess on `images` held-out images; the corrupted
    sets are kept in `<output_dir>/corrupted` and shared by every arm and seed. Skipped when
    the entry has them already.
    """
    if "mean_corruption_accuracy" in entry:
        return entry
    run_dir = os.path.join(output_dir, arm, f"seed_{seed}")
    out_dir = os.path.join(run_dir, "robustness")
    command = [
        sys.executable, os.path.join(RECIPES_DIR, "robustness_eval.py"),
        f"--export_dir={entry['export_dir']}", f"--dataset={dataset}",
        f"--validation_per_class={validation_per_class}", f"--max_images={images}",
        f"--output_dir={out_dir}", f"--corrupted_dir={os.path.join(output_dir, 'corrupted')}",
    ]
    start = time.time()
    with open(os.path.join(run_dir, "robustness_log.txt"), "a") as log:
        process = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=RECIPES_DIR)
    result = _read(os.path.join(out_dir, "robustness.json"))
    if process.returncode != 0 or result is None:
        raise RuntimeError(
            f"Robustness evaluation of {arm} seed {seed} failed (exit code "
            f"{process.returncode}); see {os.path.join(run_dir, 'robustness_log.txt')}. "
            f"Command: {' '.join(command)}"
        )
    entry = dict(entry, clean_accuracy=result["clean_accuracy"],
                 mean_corruption_accuracy=result["mean_corruption_accuracy"],
                 robustness_images=result["images"],
                 robustness_seconds=time.time() - start)
    write_json(os.path.join(run_dir, "runner.json"), entry)
    return entry


def write_markdown(experiment_name, experiment, results, path):
    arms = results["arms"]
    base = {int(s): e["validation_accuracy"] for s, e in arms[experiment.baseline]["seeds"].items()}
    robust = any("mean_corruption_accuracy" in e for data in arms.values()
                 for e in data["seeds"].values())
    lines = [
        f"### `{experiment_name}`: {experiment.description}",
        "",
        f"Paper: {experiment.claim}. Baseline arm: `{experiment.baseline}`.",
        "",
        "| arm | seeds | validation accuracy (mean ± std) | paired difference to baseline "
        "(95 % CI) | minutes per seed |" + (
            " clean / mean corruption accuracy (mean ± std) |" if robust else ""),
        "|---|---:|---:|---:|---:|" + ("---:|" if robust else ""),
    ]
    for arm, data in arms.items():
        accuracies = {int(s): e["validation_accuracy"] for s, e in data["seeds"].items()}
        if not accuracies:
            continue
        mean, std = summarize(list(accuracies.values()))
        minutes = statistics.fmean(e["seconds"] for e in data["seeds"].values()) / 60
        if arm == experiment.baseline:
            difference = "—"
        else:
            d, low, high, n = paired_difference(accuracies, base)
            if d is None:
                difference = "no common seeds"
            elif low is None:
                difference = f"{100 * d:+.2f} (1 seed)"
            else:
                difference = f"{100 * d:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]"
        row = (f"| `{arm}` | {len(accuracies)} | {100 * mean:.2f} ± {100 * std:.2f} | "
               f"{difference} | {minutes:.1f} |")
        if robust:
            entries = [e for e in data["seeds"].values() if "mean_corruption_accuracy" in e]
            if entries:
                clean = summarize([e["clean_accuracy"] for e in entries])
                corrupted = summarize([e["mean_corruption_accuracy"] for e in entries])
                row += (f" {100 * clean[0]:.2f} ± {100 * clean[1]:.2f} / "
                        f"{100 * corrupted[0]:.2f} ± {100 * corrupted[1]:.2f} |")
            else:
                row += " — |"
        lines.append(row)
    lines += ["", "Accuracies in %, differences in points. Commands: `results.json`."]
    if robust:
        images = sorted({e["robustness_images"] for data in arms.values()
                         for e in data["seeds"].values() if "robustness_images" in e})
        lines += ["Clean and mean corruption accuracy: the 15 corruptions of ImageNet-C / "
                  "CIFAR-10-C at severities 1-5 (`recipes/robustness_eval.py`) on "
                  f"{', '.join(map(str, images))} held-out images per run."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return "\n".join(lines)


def write_plot(experiment_name, experiment, results, path):
    """Curves per epoch (mean, min-max band over seeds) and final bars with error bars."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
    names, means, stds = [], [], []
    for arm, data in results["arms"].items():
        seeds = list(data["seeds"].values())
        if not seeds:
            continue
        epochs = sorted({int(e) for s in seeds for e in s["curve"]})
        if epochs:
            per_epoch = [
                [s["curve"][str(e)] for s in seeds if str(e) in s["curve"]] for e in epochs
            ]
            mean = [statistics.fmean(v) for v in per_epoch]
            curves.plot(epochs, mean, label=arm)
            curves.fill_between(
                epochs, [min(v) for v in per_epoch], [max(v) for v in per_epoch], alpha=0.2
            )
        accuracies = [s["validation_accuracy"] for s in seeds]
        mean, std = summarize(accuracies)
        names.append(arm)
        means.append(mean)
        stds.append(std)
    curves.set_xlabel("epoch")
    curves.set_ylabel("validation accuracy (probe / classifier)")
    curves.set_title(f"{experiment_name}: per epoch (mean, min-max over seeds)")
    curves.legend()
    bars.bar(names, means, yerr=stds, capsize=6, color="tab:blue", alpha=0.7)
    bars.set_ylabel("final validation accuracy")
    bars.set_title("final (mean ± std over seeds)")
    low = min(m - s for m, s in zip(means, stds)) if means else 0
    bars.set_ylim(max(0.0, low - 0.05), min(1.0, max(means) + 0.05) if means else 1)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def list_experiments():
    lines = []
    for name, experiment in sorted(EXPERIMENTS.items()):
        minutes = (
            f"{experiment.minutes_per_seed:.0f} min per seed (measured, 2-core CPU)"
            if experiment.minutes_per_seed else "minutes per seed: not measured yet"
        )
        lines.append(f"{name}: {experiment.description}; {minutes}")
        lines.append(f"  paper: {experiment.claim}")
        lines.append(f"  common flags: {' '.join(experiment.common)}")
        for arm, (script, arm_flags) in experiment.arms.items():
            marker = " (baseline)" if arm == experiment.baseline else ""
            lines.append(f"  {arm}{marker}: {script} {' '.join(arm_flags)}")
    print("\n".join(lines))
    return "\n".join(lines)
