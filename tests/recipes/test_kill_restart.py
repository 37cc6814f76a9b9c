"""Real `SIGKILL`s of a recipe in every phase, and damaged files between the restarts.

One `supcon_cifar.py` run (3 epochs of 2 steps) is killed five times at exact points, each
restart continuing the same `--model_dir`:

    A  killed while the FIRST backup is written (end of epoch 1)
    B  killed while the second backup is written (end of epoch 2)
    C  killed while the encoder is saved, after the last epoch
       -> the newest backup's `training_metadata.json` is emptied
    D  killed at the end of linear evaluation, before the classifier is saved
       -> `encoder.keras` is truncated
    E  killed at the end of the export
    F  finishes

The kills come from a test-only `sitecustomize.py` put on the subprocess's `PYTHONPATH` (the
library and the recipes hold no fault injection): it wraps the function that writes (Keras'
`save_weights` / `save`, `linear_evaluation`, `export_saved_model`), lets it write, cuts the
file it wrote to a fraction of its size (a kill in the middle of the write) and sends the
process `SIGKILL`. Each restart must succeed, repeat at most the one epoch whose backup was
lost (none after pretraining), name a damaged file in a warning, and end as an uninterrupted
run would: 6 optimizer steps, the final metrics, and the linear-evaluation accuracy that the
killed run D had computed. Keras' `BackupAndRestore` (0.1.0 and the recipes until now) fails
every start after A with `truncated file: eof = 96`, and after C repeated all of pretraining.
"""

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(REPO, "recipes")
EPOCHS, STEPS = 3, 2
ARGS = [
    "--dataset=cifar10_sample",
    "--width=4",
    "--batch_size=16",
    f"--epochs={EPOCHS}",
    f"--steps_per_epoch={STEPS}",
    "--eval_epochs=2",
    "--train_fraction=0.1",
    "--seed=1",
]

# Test-only fault injection (see the module docstring). KC_TEST_KILL is a JSON object:
# {"point": "save_weights" | "save" | "linear_evaluation" | "export", "call": n (the n-th
# call is killed), "record": path (linear_evaluation: where to write the accuracy)}.
SITECUSTOMIZE = r'''
import importlib.abc
import importlib.machinery
import json
import os
import signal
import sys

SPEC = json.loads(os.environ["KC_TEST_KILL"])
CALLS = [0]


def kill_after(function, damage):
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        CALLS[0] += 1
        if CALLS[0] == SPEC["call"]:
            damage(args, kwargs, result)
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return wrapper


def cut(path, fraction):
    path = os.fspath(path)
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * fraction))


def saved_path(args, kwargs):
    return kwargs.get("filepath", args[1] if len(args) > 1 else None)


def patch(module):
    point = SPEC["point"]
    if module.__name__ == "keras" and point in ("save_weights", "save"):
        # 96 bytes: the HDF5 header, as a kill early in the write leaves it.
        fraction = {"save_weights": 0.0, "save": 0.5}[point]
        def damage(args, kwargs, result):
            path = saved_path(args, kwargs)
            if fraction:
                cut(path, fraction)
            else:
                with open(path, "r+b") as f:
                    f.truncate(96)
        setattr(module.Model, point, kill_after(getattr(module.Model, point), damage))
    if module.__name__ == "keras_contrast.models" and point == "linear_evaluation":
        def record(args, kwargs, result):
            with open(SPEC["record"], "w") as f:
                json.dump({"accuracy": result[0]}, f)
        module.linear_evaluation = kill_after(module.linear_evaluation, record)
    if module.__name__ == "keras_contrast.export" and point == "export":
        def half_export(args, kwargs, result):
            os.remove(os.path.join(result, "saved_model.pb"))
        module.export_saved_model = kill_after(module.export_saved_model, half_export)


class PatchAfterImport(importlib.abc.MetaPathFinder):
    NAMES = ("keras", "keras_contrast.models", "keras_contrast.export")

    def find_spec(self, name, path, target=None):
        if name not in self.NAMES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


sys.meta_path.insert(0, PatchAfterImport())
'''


def run(model_dir, faults, kill=None):
    """Runs the recipe; with `kill`, asserts that it died of the SIGKILL."""
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    env.update(
        PYTHONPATH=os.pathsep.join([str(faults), REPO]),
        PYTHONUNBUFFERED="1",  # every epoch line reaches the pipe before the kill
        CUDA_VISIBLE_DEVICES="",
        KC_TEST_KILL=json.dumps(kill or {"point": "none", "call": 0}),
    )
    command = [sys.executable, os.path.join(RECIPES, "supcon_cifar.py"),
               f"--model_dir={model_dir}", f"--export_dir={model_dir / 'export'}", *ARGS]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env)
    output = f"{kill}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    if kill:
        assert proc.returncode == -9, output  # the kill, not a failure before it
    else:
        assert proc.returncode == 0, output
    return proc, output


def epochs_run(proc):
    """The epochs (from 1) that the run started, from Keras' `Epoch k/3` lines."""
    return [int(k) for k in re.findall(rf"^Epoch (\d+)/{EPOCHS}$", proc.stdout, re.M)]


def weights_digest(keras_file):
    """A digest of the weights in a `.keras` file (the zip also holds the save date)."""
    import h5py

    digest = hashlib.sha256()
    with zipfile.ZipFile(keras_file) as archive, archive.open("model.weights.h5") as member:
        with h5py.File(io.BytesIO(member.read()), "r") as weights:
            def add(name, item):
                if isinstance(item, h5py.Dataset):
                    digest.update(name.encode() + item[()].tobytes())
            weights.visititems(add)
    return digest.hexdigest()


def newest_metadata(backup):
    names = sorted(n for n in os.listdir(backup) if n.startswith("checkpoint-"))
    return backup / names[-1] / "training_metadata.json"


@pytest.mark.slow
def test_killed_in_every_phase_resumes_and_ends_as_an_uninterrupted_run(tmp_path):
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(SITECUSTOMIZE)
    model_dir = tmp_path / "model"
    backup = model_dir / "backup"

    # A: the first backup is being written.
    proc, out = run(model_dir, faults, {"point": "save_weights", "call": 1})
    assert epochs_run(proc) == [1], out

    # B: starts again (epoch 1 was never backed up: repeated), killed writing epoch 2's.
    proc, out = run(model_dir, faults, {"point": "save_weights", "call": 2})
    assert epochs_run(proc) == [1, 2], out

    # C: resumes after epoch 1 (repeats epoch 2 only), killed saving the encoder.
    proc, out = run(model_dir, faults, {"point": "save", "call": 1})
    assert epochs_run(proc) == [2, 3], out
    assert not os.path.exists(model_dir / "pretrain_done.json")

    damaged_metadata = newest_metadata(backup)  # epoch 3's
    damaged_metadata.write_text("")

    # D: epoch 3's backup is damaged: back to epoch 2's, with a warning naming the file;
    # killed when linear evaluation has computed its accuracy.
    record = tmp_path / "killed_linear_eval.json"
    proc, out = run(model_dir, faults,
                    {"point": "linear_evaluation", "call": 1, "record": str(record)})
    assert epochs_run(proc) == [3], out
    assert str(damaged_metadata) in proc.stderr, out
    pretrained = json.loads((model_dir / "pretrain_done.json").read_text())
    assert pretrained["optimizer_steps"] == EPOCHS * STEPS
    killed_accuracy = json.loads(record.read_text())["accuracy"]

    encoder = model_dir / "encoder.keras"
    encoder_weights = weights_digest(encoder)
    with open(encoder, "r+b") as f:
        f.truncate(os.path.getsize(encoder) // 3)

    # E: the damaged encoder is made again from the last backup without training (no
    # epoch); linear evaluation runs again; killed at the end of the export.
    proc, out = run(model_dir, faults, {"point": "export", "call": 1})
    assert epochs_run(proc) == [], out
    assert str(encoder) in proc.stderr, out
    assert weights_digest(encoder) == encoder_weights  # the weights of run D's
    evaluated = json.loads((model_dir / "linear_eval_done.json").read_text())
    assert evaluated["linear_eval_accuracy"] == killed_accuracy
    assert not os.path.exists(model_dir / "export" / "saved_model.pb")

    # F: only the export is left.
    proc, out = run(model_dir, faults)
    assert epochs_run(proc) == [], out
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["optimizer_steps"] == EPOCHS * STEPS
    assert result["linear_eval_accuracy"] == killed_accuracy
    assert result["loss"] == pretrained["metrics"]["loss"]  # epoch 3's, kept with its backup
    assert "probe_accuracy" in result
    assert os.path.exists(model_dir / "export" / "saved_model.pb")
    assert weights_digest(encoder) == encoder_weights
    assert not os.path.exists(backup)  # removed once everything is saved
    leftovers = [name for name in os.listdir(model_dir) if ".tmp" in name]
    assert leftovers == []
