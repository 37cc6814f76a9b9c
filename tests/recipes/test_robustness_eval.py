"""`recipes/robustness_eval.py`: clean and corruption accuracy of an exported classifier."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrast as kc
from tests.recipes.test_recipes import RECIPES, last_json, recipe_env

sys.path.insert(0, RECIPES)
import robustness_eval  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = kc.models.LinearClassifier(kc.models.ResNet(18, 4, (32, 32, 3)), num_classes=10)
    model(tf.zeros([1, 32, 32, 3]))
    path = str(tmp_path_factory.mktemp("robust") / "export")
    return model, kc.export.export_saved_model(model, path, (32, 32))


def test_evaluate_export_writes_json_heatmap_and_matches_the_keras_model(exported, tmp_path):
    model, export_dir = exported
    result = robustness_eval.evaluate_export(
        export_dir, "cifar10_sample", max_images=40, corruptions=["fog", "contrast"],
        severities=(1, 3), output_dir=str(tmp_path / "out"), verbose=0,
    )
    # The same 40 images, evenly spaced in the sample's validation split (1,000 images).
    images, labels, _ = kc.data.cifar10_sample_arrays("validation")
    keep = np.linspace(0, len(images) - 1, 40).round().astype(int)
    images, labels = images[keep], labels[keep]
    assert result["images"] == 40
    assert result["clean_accuracy"] == kc.evaluation.accuracy(model, images, labels)
    expected = kc.evaluation.corruption_accuracy(
        model, images, labels, corruptions=["fog", "contrast"], severities=(1, 3), verbose=0)
    assert result["corruption_accuracy"] == {
        c: {str(s): expected[c][s] for s in (1, 3)} for c in ("fog", "contrast")}
    assert result["mean_corruption_accuracy"] == expected["mean"]
    with open(tmp_path / "out" / "robustness.json") as f:
        assert json.load(f) == result
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 1000
    table = robustness_eval.table(result).splitlines()
    assert table[0] == "| corruption | severity 1 | severity 3 | mean |"
    fog = result["corruption_accuracy"]["fog"]
    assert table[2] == (f"| fog | {100 * fog['1']:.1f} | {100 * fog['3']:.1f} | "
                        f"{100 * (fog['1'] + fog['3']) / 2:.1f} |")


def test_folder_held_out_split_needs_validation_images():
    with pytest.raises(ValueError, match="--validation_per_class >= 1. Received: "
                                         "--validation_per_class=0"):
        robustness_eval.load_held_out("folder:/x", 0, None, 10, (32, 32))


@pytest.mark.slow
def test_recipe_prints_the_table_and_the_json_line(exported, tmp_path):
    _, export_dir = exported
    command = [sys.executable, os.path.join(RECIPES, "robustness_eval.py"),
               f"--export_dir={export_dir}", "--max_images=20", "--corruptions=gaussian_noise",
               "--severities=2,5", f"--output_dir={tmp_path}", "--corruption_source=on_the_fly"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=recipe_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["images"] == 20 and 0 <= result["mean_corruption_accuracy"] <= 1
    assert result["corruption_source"] == "on_the_fly"
    assert "| gaussian_noise |" in proc.stdout
    bad = subprocess.run(command[:2] + ["--export_dir=/nonexistent"], capture_output=True,
                         text=True, timeout=300, env=recipe_env())
    assert bad.returncode != 0 and "--export_dir must be a SavedModel folder" in bad.stderr


def test_prepared_cifar10_corrupted_is_read_instead_of_corrupting(exported, tmp_path):
    import tensorflow_datasets as tfds

    from tests.data.test_tfds import _write_prepared_metadata
    from tests.test_evaluation import fake_level, fake_tfds_records

    model, export_dir = exported
    data_dir = str(tmp_path / "tfds")
    _write_prepared_metadata(data_dir, "cifar10", {"train": 50000, "test": 10000})
    for name in ("fog_1", "frosted_glass_blur_1"):
        _write_prepared_metadata(data_dir, f"cifar10_corrupted/{name}", {"test": 10000})
    kwargs = dict(data_dir=data_dir, max_images=6, severities=(1,), verbose=0)
    with tfds.testing.mock_data(as_dataset_fn=fake_tfds_records, data_dir=data_dir):
        result = robustness_eval.evaluate_export(
            export_dir, "cifar10", corruptions=["fog", "glass_blur"],
            output_dir=str(tmp_path / "out"), **kwargs)
        # A corruption that is not prepared: auto corrupts on the fly, the explicit source
        # names what is missing.
        on_the_fly = robustness_eval.evaluate_export(
            export_dir, "cifar10", corruptions=["snow"], output_dir=str(tmp_path / "snow"),
            **kwargs)
        with pytest.raises(ValueError, match="cifar10_corrupted/snow_1: not prepared"):
            robustness_eval.evaluate_export(
                export_dir, "cifar10", corruptions=["snow"], output_dir=str(tmp_path / "x"),
                corruption_source="cifar10_corrupted", **kwargs)
    # The Keras model on the mocked records, built here: 6 of 12 evenly spaced.
    keep = np.linspace(0, 11, 6).round().astype(int)

    def records(config):
        images = np.stack([np.full((32, 32, 3), fake_level(config, k), np.uint8) for k in keep])
        return images, keep % 10

    assert result["corruption_source"] == "cifar10_corrupted" and result["images"] == 6
    assert result["clean_accuracy"] == kc.evaluation.accuracy(model, *records("cifar10"))
    assert result["corruption_accuracy"] == {
        "fog": {"1": kc.evaluation.accuracy(model, *records("fog_1"))},
        "glass_blur": {"1": kc.evaluation.accuracy(model, *records("frosted_glass_blur_1"))}}
    assert on_the_fly["corruption_source"] == "on_the_fly"


def test_corruption_source_errors_and_other_image_sizes():
    args = ("cifar10", (32, 32), ["fog"], (1,), "/nonexistent")
    with pytest.raises(ValueError, match="needs --dataset=cifar10. Received: "
                                         "--dataset=cifar10_sample"):
        robustness_eval.resolve_corruption_source("cifar10_corrupted", "cifar10_sample",
                                                  *args[1:])
    with pytest.raises(ValueError, match="Received an export taking 64 x 64"):
        robustness_eval.resolve_corruption_source("cifar10_corrupted", "cifar10", (64, 64),
                                                  *args[2:])
    with pytest.raises(ValueError, match="--corruption_source=tfds"):
        robustness_eval.resolve_corruption_source("tfds", *args)
    # auto: nothing prepared there, or an export of another size -> on the fly.
    assert robustness_eval.resolve_corruption_source("auto", *args) == "on_the_fly"
    assert robustness_eval.resolve_corruption_source(
        "auto", "cifar10", (64, 64), *args[2:]) == "on_the_fly"
    assert robustness_eval.resolve_corruption_source("on_the_fly", *args) == "on_the_fly"
