"""Bad output folders and impossible sizes fail at start-up, before any training."""

import dataclasses
import os
import subprocess
import sys

import pytest

from tests.recipes.test_recipes import QUICK, RECIPES, recipe_env

sys.path.insert(0, RECIPES)
import builders  # noqa: E402


def test_output_folder_that_is_a_file_or_cannot_be_created(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match=f"--model_dir must be a directory. Received: --model_dir={a_file}"):
        builders.check_writable_directory(str(a_file), "--model_dir")
    with pytest.raises(ValueError, match="--export_dir must be a writable directory"):
        builders.check_writable_directory("/proc/keras_contrast/export", "--export_dir")
    builders.check_writable_directory(str(tmp_path / "new" / "dir"), "--model_dir")
    assert os.listdir(tmp_path / "new" / "dir") == []  # the check leaves nothing behind


@dataclasses.dataclass
class _Config:
    steps_per_epoch: int = None
    batch_size: int = 64
    dataset: str = "cifar10_sample"
    train_fraction: float = 0.01


@dataclasses.dataclass
class _Info:
    num_examples: int


def test_batch_larger_than_the_training_split_is_an_error():
    with pytest.raises(ValueError, match=r"--batch_size=64 is larger than the training split \(50"):
        builders.steps_per_epoch(_Config(), _Info(50))
    assert builders.steps_per_epoch(_Config(), _Info(130)) == 2


def test_recipe_stops_before_training_when_the_export_dir_is_a_file(tmp_path):
    # 0.1.0 trained, evaluated, and failed only when exporting.
    a_file = tmp_path / "export"
    a_file.write_text("x")
    command = [sys.executable, os.path.join(RECIPES, "supcon_cifar.py"), *QUICK,
               f"--model_dir={tmp_path / 'model'}", f"--export_dir={a_file}"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=recipe_env())
    assert proc.returncode != 0
    assert "--export_dir must be a directory" in proc.stderr, proc.stderr[-2000:]
    assert "Epoch 1" not in proc.stdout
