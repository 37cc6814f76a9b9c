"""End-to-end runs of every recipe on the shipped CIFAR-10 sample, in subprocesses.

Each run trains a tiny ResNet (width 4) for a couple of steps, evaluates, exports, and prints
its JSON line; the tests then load the SavedModel. Marked slow (tens of seconds each).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(REPO, "recipes")

QUICK = [
    "--dataset=cifar10_sample",
    "--width=4",
    "--batch_size=16",
    "--epochs=1",
    "--steps_per_epoch=2",
    "--eval_epochs=1",
    "--seed=1",
]


def recipe_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def run_recipe(name, tmp_path, *args, env=None, timeout=420):
    command = [
        sys.executable,
        os.path.join(RECIPES, name),
        f"--model_dir={tmp_path / 'model'}",
        f"--export_dir={tmp_path / 'export'}",
        *QUICK,
        *args,
    ]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=recipe_env(env)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return last_json(proc.stdout)


def last_json(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1])


def check_saved_model(export_dir, num_classes=10):
    """Loads the export in a fresh interpreter that does not import keras_contrast."""
    code = f"""
import json, numpy as np, tensorflow as tf
loaded = tf.saved_model.load({export_dir!r})
images = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
out = loaded.signatures["serving_default"](images=images)
jpeg = tf.io.encode_jpeg(tf.cast(images[0], tf.uint8)).numpy()
enc = loaded.signatures["serve_encoded"](image_bytes=tf.constant([jpeg]))
print(json.dumps({{k: list(v.shape) for k, v in out.items()}}))
print(json.dumps({{k: list(v.shape) for k, v in enc.items()}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
        env=recipe_env({"PYTHONPATH": ""}), cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shapes, encoded = [json.loads(x) for x in proc.stdout.strip().splitlines()[-2:]]
    assert shapes["probabilities"] == [2, num_classes]
    assert encoded["probabilities"] == [1, num_classes]
    assert "embeddings" in shapes


def check_result(result, tmp_path):
    assert result["export_dir"] == str(tmp_path / "export")
    assert result["optimizer_steps"] == 2
    check_saved_model(result["export_dir"])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supcon", "simclr"])
def test_supcon_cifar(tmp_path, method):
    result = run_recipe("supcon_cifar.py", tmp_path, f"--method={method}")
    assert 0.0 <= result["linear_eval_accuracy"] <= 1.0
    assert os.path.exists(result["encoder_path"])
    check_result(result, tmp_path)
    logs = tmp_path / "model" / "tensorboard"
    assert any("images" in root for root, _, files in os.walk(logs) if files)


@pytest.mark.slow
def test_supcon_cifar_mirrored(tmp_path):
    result = run_recipe(
        "supcon_cifar.py", tmp_path, "--strategy=mirrored",
    )
    check_result(result, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["--noimclr", "--cutmix", "--randaugment"]])
def test_imclr_cifar(tmp_path, args):
    result = run_recipe("imclr_cifar.py", tmp_path, "--train_fraction=0.5", *args)
    assert result["imclr"] == ("--noimclr" not in args)
    check_result(result, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("args", [[], ["--base=simclr"]])
def test_mixco_cifar(tmp_path, args):
    result = run_recipe("mixco_cifar.py", tmp_path, "--queue_size=64", *args)
    assert result["mixco"] is True
    check_result(result, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("crops", ["single", "multi"])
def test_clsa_cifar(tmp_path, crops):
    result = run_recipe("clsa_cifar.py", tmp_path, "--queue_size=64", f"--crops={crops}")
    assert result["clsa"] is True and result["crops"] == crops
    check_result(result, tmp_path)


@pytest.mark.slow
def test_linear_eval_of_saved_encoder(tmp_path):
    pretrain = run_recipe("supcon_cifar.py", tmp_path / "pre")
    result = run_recipe("linear_eval.py", tmp_path, f"--encoder={pretrain['encoder_path']}")
    assert 0.0 <= result["linear_eval_accuracy"] <= 1.0
    check_saved_model(result["export_dir"])


@pytest.fixture
def recipe_flags():
    """The recipes' shared flags, parsed in this process; reset afterwards."""
    sys.path.insert(0, RECIPES)
    try:
        import common  # noqa: F401  (defines the shared flags)
        from absl import flags

        yield common, flags.FLAGS
    finally:
        flags.FLAGS.unparse_flags()
        sys.path.remove(RECIPES)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch_size=0"], "--batch_size must be >= 1. Received: --batch_size=0"),
        (["--model=resnet99"], "--model must be one of"),
        (["--tpu=grpc://x"], "--tpu is only used with --strategy=tpu"),
        (["--warmup_epochs=5"], "--warmup_epochs must be in"),
        (["--strategy=multi_worker"], "needs the TF_CONFIG environment variable"),
        (["--temperature=0"], "--temperature must be > 0. Received: --temperature=0.0"),
        (["--steps_per_epoch=0"], "--steps_per_epoch must be >= 1"),
    ],
)
def test_bad_flags_give_clear_errors(recipe_flags, monkeypatch, args, message):
    common, flag_values = recipe_flags
    monkeypatch.delenv("TF_CONFIG", raising=False)
    flag_values(["recipe", *QUICK, *args])
    with pytest.raises(ValueError, match=message.replace("+", r"\+")):
        common.config_from_flags("supcon_cifar")


def test_bad_flag_error_reaches_the_user(tmp_path):
    command = [sys.executable, os.path.join(RECIPES, "supcon_cifar.py"), *QUICK, "--epochs=0"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=recipe_env())
    assert proc.returncode != 0
    assert "--epochs must be >= 1. Received: --epochs=0" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    """Killed after epoch 1 (SIGKILL), a restart resumes at epoch 2 with the same steps."""
    args = ["--epochs=3", "--steps_per_epoch=3"]
    reference = run_recipe("supcon_cifar.py", tmp_path / "full", *args)
    assert reference["optimizer_steps"] == 9

    run_dir = tmp_path / "killed"
    command = [
        sys.executable,
        os.path.join(RECIPES, "supcon_cifar.py"),
        f"--model_dir={run_dir / 'model'}",
        f"--export_dir={run_dir / 'export'}",
        *QUICK,
        *args,
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=recipe_env()
    )
    # Kill as soon as epoch 2 starts: epoch 1 has ended and its backup has been written.
    seen = []

    def read_output():
        for line in proc.stdout:
            seen.append(line)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any("Epoch 2/3" in line for line in seen):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)

    resumed = subprocess.run(
        command, capture_output=True, text=True, timeout=420, env=recipe_env()
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Epoch 1/3" not in resumed.stdout  # it starts at epoch 2 (or later)
    assert last_json(resumed.stdout)["optimizer_steps"] == reference["optimizer_steps"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored(tmp_path):
    """Two worker processes on 127.0.0.1 train together and end with the same weights."""
    ports = free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        worker_dir = tmp_path / f"worker{index}"
        command = [
            sys.executable,
            os.path.join(RECIPES, "supcon_cifar.py"),
            "--strategy=multi_worker",
            "--sync_bn",  # global BatchNorm statistics: moving averages agree too
            f"--model_dir={worker_dir / 'model'}",
            f"--export_dir={worker_dir / 'export'}",
            *QUICK,
        ]
        procs.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=recipe_env({"TF_CONFIG": json.dumps(tf_config)}),
            )
        )
    outputs = [p.communicate(timeout=420) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-4000:]
    results = [last_json(out) for out, _ in outputs]
    assert all(r["optimizer_steps"] == 2 for r in results)

    code = """
import sys, numpy as np, keras, keras_contrast
a, b = (keras.saving.load_model(p) for p in sys.argv[1:3])
diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights()))
print(diff)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, results[0]["encoder_path"], results[1]["encoder_path"]],
        capture_output=True, text=True, timeout=180, env=recipe_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5
