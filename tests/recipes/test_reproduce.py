"""The reproduction runner: statistics, tables, listing, and an end-to-end resumable run."""

import json
import os
import statistics
import subprocess
import sys

import pytest

from tests.recipes.test_recipes import RECIPES, recipe_env

sys.path.insert(0, RECIPES)
import reproduction  # noqa: E402


def test_t_quantiles_match_tables():
    # Student's t, two-sided 95 %: standard table values.
    assert reproduction.t_quantile_975(1) == pytest.approx(12.706, abs=1e-3)
    assert reproduction.t_quantile_975(2) == pytest.approx(4.303, abs=1e-3)
    assert reproduction.t_quantile_975(10) == pytest.approx(2.228, abs=1e-3)
    assert reproduction.t_quantile_975(100) == pytest.approx(1.96)
    with pytest.raises(ValueError, match="degree of freedom"):
        reproduction.t_quantile_975(0)


def test_paired_difference_uses_common_seeds_and_a_t_interval():
    arm = {0: 0.62, 1: 0.60, 2: 0.65, 3: 0.9}
    base = {0: 0.60, 1: 0.59, 2: 0.61}
    mean, low, high, n = reproduction.paired_difference(arm, base)
    diffs = [0.02, 0.01, 0.04]  # seed 3 has no baseline and is left out
    assert n == 3
    assert mean == pytest.approx(sum(diffs) / 3)
    half = 4.303 * statistics.stdev(diffs) / 3 ** 0.5
    assert (low, high) == (pytest.approx(mean - half, abs=1e-4), pytest.approx(mean + half, abs=1e-4))
    assert reproduction.paired_difference({0: 0.5}, {0: 0.4})[1:3] == (None, None)
    assert reproduction.paired_difference({1: 0.5}, {0: 0.4}) == (None, None, None, 0)


def _fake_results():
    def seeds(values):
        return {
            str(s): {"validation_accuracy": v, "seconds": 60.0 * (s + 1), "export_dir": "x",
                     "command": "c", "curve": {"1": v / 2, "2": v}}
            for s, v in enumerate(values)
        }

    return {"arms": {"ce": {"seeds": seeds([0.60, 0.62, 0.61])},
                     "imclr": {"seeds": seeds([0.63, 0.62, 0.64])}}}


def test_markdown_table_adds_clean_and_corruption_accuracy(tmp_path):
    results = _fake_results()
    for arm, (clean, corrupted) in {"ce": (0.5, 0.3), "imclr": (0.6, 0.4)}.items():
        for s, entry in results["arms"][arm]["seeds"].items():
            entry.update(clean_accuracy=clean + 0.01 * int(s),
                         mean_corruption_accuracy=corrupted, robustness_images=1000)
    text = reproduction.write_markdown("imclr_low_data",
                                       reproduction.EXPERIMENTS["imclr_low_data"], results,
                                       str(tmp_path / "results.md"))
    assert "| `ce` | 3 | 61.00 ± 1.00 | — | 2.0 | 51.00 ± 1.00 / 30.00 ± 0.00 |" in text
    assert "on 1000 held-out images per run" in text


def test_markdown_table_has_mean_std_and_paired_interval(tmp_path):
    experiment = reproduction.EXPERIMENTS["imclr_low_data"]
    text = reproduction.write_markdown("imclr_low_data", experiment, _fake_results(),
                                       str(tmp_path / "results.md"))
    assert "| `ce` | 3 | 61.00 ± 1.00 | — | 2.0 |" in text
    mean, low, high, _ = reproduction.paired_difference(
        {0: 0.63, 1: 0.62, 2: 0.64}, {0: 0.60, 1: 0.62, 2: 0.61})
    assert f"{100 * mean:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}]" in text
    assert (tmp_path / "results.md").read_text().startswith("### `imclr_low_data`")
    reproduction.write_plot("imclr_low_data", experiment, _fake_results(),
                            str(tmp_path / "results.png"))
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"


def test_every_experiment_is_defined_with_its_arms():
    names = {name: set(e.arms) for name, e in reproduction.EXPERIMENTS.items()}
    assert names["imclr_low_data"] == {"ce", "imclr"}
    assert names["supcon_vs_ce"] == {"ce", "supcon", "simclr"}
    assert {"simclr", "simclr_mixco"} <= names["mixco"]
    assert names["clsa"] == {"moco", "clsa"}
    assert names["pi_model"] == {"pi", "pi_imclr"}
    for experiment in reproduction.EXPERIMENTS.values():
        assert experiment.baseline in experiment.arms
        for script, _ in experiment.arms.values():
            assert os.path.exists(os.path.join(RECIPES, script))
    listing = reproduction.list_experiments()
    assert "imclr_low_data" in listing and "(baseline)" in listing


def _runner(tmp_path, *args):
    command = [
        sys.executable, os.path.join(RECIPES, "reproduce.py"), "--experiment=imclr_low_data",
        "--dataset=cifar10_sample", "--seeds=2", f"--output_dir={tmp_path}",
        "--override=--epochs=2", "--override=--steps_per_epoch=2", "--override=--width=4",
        "--override=--batch_size=16", "--override=--train_fraction=0.2",
        "--robustness_images=20", *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=recipe_env())


@pytest.mark.slow
def test_runner_end_to_end_and_resume(tmp_path):
    proc = _runner(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["experiment"] == "imclr_low_data"
    for arm in ("ce", "imclr"):
        for seed in ("0", "1"):
            entry = results["arms"][arm]["seeds"][seed]
            assert 0 <= entry["validation_accuracy"] <= 1
            assert f"--seed={seed}" in entry["command"]
            assert os.path.exists(os.path.join(entry["export_dir"], "saved_model.pb"))
            assert set(entry["curve"]) == {"1", "2"}
            assert entry["robustness_images"] == 20
            assert 0 <= entry["mean_corruption_accuracy"] <= 1
            assert 0 <= entry["clean_accuracy"] <= 1
    # One corrupted set per (corruption, severity), shared by the four runs.
    assert len(os.listdir(tmp_path / "corrupted")) == 75
    markdown = (tmp_path / "results.md").read_text()
    assert "paired difference" in markdown and "mean corruption accuracy" in markdown
    assert (tmp_path / "results.png").exists()
    assert "about" in proc.stdout and "min left" in proc.stdout  # progress with an estimate
    # Run again: every (arm, seed) is skipped, the numbers are the same.
    again = _runner(tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("already done") == 4
    assert json.loads((tmp_path / "results.json").read_text()) == results
    # --report_only rewrites the tables from results.json without running anything.
    (tmp_path / "results.md").unlink()
    report = _runner(tmp_path, "--report_only")
    assert report.returncode == 0, report.stderr[-3000:]
    assert "already done" not in report.stdout and "| `imclr` | 2 |" in report.stdout
    assert (tmp_path / "results.md").exists()


def test_runner_errors(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(RECIPES, "reproduce.py"), "--experiment=clsa"],
        capture_output=True, text=True, timeout=120, env=recipe_env(),
    )
    assert proc.returncode != 0 and "--output_dir" in proc.stderr
    proc = subprocess.run(
        [sys.executable, os.path.join(RECIPES, "reproduce.py"), "--experiment=clsa",
         f"--output_dir={tmp_path}", "--report_only"],
        capture_output=True, text=True, timeout=120, env=recipe_env(),
    )
    assert proc.returncode != 0 and "No results to report" in proc.stderr
