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


def _folder_with_a_truncated_image(root):
    from tests.recipes.test_recipes import write_image_folder

    write_image_folder(root, per_class=6)
    png = (root / "class_1" / "002.png").read_bytes()
    (root / "class_1" / "002.png").write_bytes(png[: len(png) // 2])
    return root


def test_recipe_names_a_damaged_image_before_training(tmp_path):
    # 0.1.0 crashed mid-training with "Invalid PNG data", naming no file.
    folder = _folder_with_a_truncated_image(tmp_path / "images")
    command = [sys.executable, os.path.join(RECIPES, "supcon_cifar.py"), *QUICK,
               f"--dataset=folder:{folder}", "--validation_per_class=2", "--batch_size=4",
               f"--model_dir={tmp_path / 'model'}", f"--export_dir={tmp_path / 'export'}"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=recipe_env())
    assert proc.returncode != 0
    assert ("1 of the 12 files of split 'train' of " in proc.stderr
            and "class_1/002.png: truncated PNG (no IEND chunk)" in proc.stderr
            and "--on_bad_image=skip" in proc.stderr), proc.stderr[-2000:]
    assert "Epoch 1" not in proc.stdout


@dataclasses.dataclass
class _FolderConfig:
    dataset: str
    on_bad_image: str
    validation_per_class: int = 2
    image_size: int = None
    seed: int = 0
    train_fraction: float = 1.0
    has_validation: bool = True


def test_skip_leaves_damaged_images_out_and_says_so(tmp_path, capsys):
    folder = _folder_with_a_truncated_image(tmp_path / "images")
    config = _FolderConfig(f"folder:{folder}", "skip")
    with pytest.warns(UserWarning, match=r"Leaving out 1 of the 12 files .*class_1/002.png"):
        train, validation, info = builders.load_splits(config)
    assert info.num_examples == 11 and len(list(train)) == 11 and len(list(validation)) == 6
    assert capsys.readouterr().out == (
        f"Dataset folder:{folder} train: 11 images, 3 classes, 32x32 "
        "(left out: 1 unreadable images)\n")
