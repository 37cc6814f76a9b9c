"""Benchmark: SupCon training-step throughput (view-images/s) of SupConModel + CIFAR ResNet-18.

Usage:

    python bench/bench_train_step.py                 # widths 16 and 64, all 8 settings each
    python bench/bench_train_step.py --quick         # width 16 only
    python bench/bench_train_step.py --widths 16 --steps 5 --rounds 2

What runs: `keras_contrast.models.SupConModel` with `ResNet(depth=18, width=W,
image_shape=(32, 32, 3))`, the default `ProjectionHead` (128-d) and `SupConLoss(temperature=
0.1)`, labels in 10 classes, SGD (momentum 0.9), trained with `model.fit` on ONE constant
batch held in memory (`tf.data.Dataset.from_tensors((views, labels)).repeat()`, views random
`uint8` `[128, 2, 32, 32, 3]` cast to float32 once), so the input pipeline costs nothing.
Each setting is a product of:

- `jit_compile` False / True (`model.compile(jit_compile=...)`),
- dtype policy `float32` / `mixed_bfloat16` (`keras.mixed_precision.set_global_policy`),
- strategy: the default strategy (one device) / `MirroredStrategy` over 2 logical CPU
  devices (the one physical CPU split with `tf.config.set_logical_device_configuration`;
  the global batch of 128 is split into 2 x 64, and the loss all-gathers the projections).
  At widths > 32 only the default strategy in float32 runs unless `--wide-all`: on a CPU
  without native bfloat16 a width-64 mixed_bfloat16 step takes minutes.

A setting that raises is reported as `failed` with its last error line.

Every setting runs in its own fresh subprocess, so the dtype policy and the logical-device
configuration (which must be set before TensorFlow's runtime starts) do not leak. In the
subprocess: a first `fit` call (the warm-up: tracing, XLA compilation, first steps; 2 steps
for float32 at widths <= 32, else 1) is not timed; a second `fit` call (same compiled train
function) runs `--steps` steps (default 4 for float32 at widths <= 32, else 2) and its wall time (`on_epoch_begin`
to `on_epoch_end`, which waits for the loss) divided by the steps is the step time. Throughput = 256 view-images (128 images x 2 views) / step time. With `--rounds N`
the settings run N times, alternate rounds in reverse order, and the median step is kept.

On a CPU, "MirroredStrategy over 2 logical devices" does not add compute: both replicas
share the same cores (TensorFlow's inter/intra-op thread pools), so its row measures the
overhead of replication (per-replica graphs, all-gather, gradient all-reduce), not a
speed-up.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from statistics import median

from _common import print_machine_line, repo_root

BATCH = 128
VIEWS = 2
SIZE = 32
NUM_CLASSES = 10


def worker(width, jit, policy, replicas, warmup_steps, steps, seed):
    """One setting in this (fresh) process; prints a JSON line."""
    import tensorflow as tf

    if replicas > 1:
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
        )
    import keras
    import numpy as np

    import keras_contrast as kc

    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(policy)
    if replicas > 1:
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
    else:
        strategy = tf.distribute.get_strategy()
    rng = np.random.default_rng(seed)
    views = rng.integers(0, 256, size=(BATCH, VIEWS, SIZE, SIZE, 3), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=BATCH).astype("int32")
    dataset = tf.data.Dataset.from_tensors(
        (tf.cast(tf.constant(views), tf.float32), tf.constant(labels))
    ).repeat()
    with strategy.scope():
        model = kc.models.SupConModel(
            encoder=kc.models.ResNet(depth=18, width=width, image_shape=(SIZE, SIZE, 3)),
            head=kc.models.ProjectionHead(output_dim=128),
            loss=kc.losses.SupConLoss(temperature=0.1),
        )
        model.build((None, SIZE, SIZE, 3))
        model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), jit_compile=jit)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])  # the epoch's work has finished
            self.times.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    model.fit(dataset, epochs=1, steps_per_epoch=warmup_steps, verbose=0, callbacks=[timer])
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    step_s = timer.times[1] / steps
    print("RESULT " + json.dumps(dict(
        width=width, jit=jit, policy=policy, replicas=replicas, step_s=step_s,
        warmup_s=timer.times[0], replicas_in_sync=strategy.num_replicas_in_sync,
        loss=float(model.history.history["loss"][-1]),
    )))


def run_one(width, jit, policy, replicas, warmup_steps, steps, seed):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(width), str(int(jit)),
           policy, str(replicas), str(warmup_steps), str(steps), str(seed)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo_root())
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    # A setting that fails (e.g. XLA under MirroredStrategy on logical CPUs) is reported.
    lines = out.stderr.strip().splitlines() or ["(no output)"]
    errors = [line for line in lines if "Error:" in line or "Trying to access" in line]
    error = re.sub(r" \(defined @ [^)]*\)", "", (errors or lines)[-1]).strip()
    return {"error": error[:300]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--quick", action="store_true", help="width 16 only")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per setting; default 4 (float32, width <= 32), else 2")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--wide-all", action="store_true",
                        help="all settings at widths > 32 (very slow on a CPU)")
    parser.add_argument("--worker", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        width, jit, policy, replicas, warmup, steps, seed = args.worker
        worker(int(width), bool(int(jit)), policy, int(replicas), int(warmup), int(steps),
               int(seed))
        return
    widths = [16] if args.quick else args.widths
    settings = [
        (jit, policy, replicas)
        for replicas in (1, 2)
        for policy in ("float32", "mixed_bfloat16")
        for jit in (False, True)
    ]

    def settings_for(width):
        if width > 32 and not args.wide_all:
            return [s for s in settings if s[2] == 1 and s[1] == "float32"]
        return settings

    results, errors = {}, {}
    for round_index in range(args.rounds):
        for width in widths:
            order = settings_for(width)
            order = order if round_index % 2 == 0 else order[::-1]
            for jit, policy, replicas in order:
                slow = width > 32 or policy != "float32"
                steps = args.steps or (2 if slow else 4)
                warmup = 1 if slow else 2
                r = run_one(width, jit, policy, replicas, warmup, steps, seed=round_index)
                if "error" in r:
                    errors[(width, jit, policy, replicas)] = r["error"]
                    print(f"  width={width} jit={int(jit)} {policy:>14} replicas={replicas} "
                          f"FAILED: {r['error']}", file=sys.stderr)
                    continue
                results.setdefault((width, jit, policy, replicas), []).append(r["step_s"])
                print(f"  width={width} jit={int(jit)} {policy:>14} replicas={replicas} "
                      f"{r['step_s'] * 1e3:9.1f} ms/step  (warm-up {r['warmup_s']:.1f} s)",
                      file=sys.stderr)
    print("| width | strategy | policy | jit_compile | step (ms, median) | view-images/s "
          "| vs float32 default no-jit |")
    print("|---:|---|---|:---:|---:|---:|---:|")
    for width in widths:
        base = median(results[(width, False, "float32", 1)])
        for jit, policy, replicas in settings_for(width):
            strategy = "default" if replicas == 1 else f"Mirrored ({replicas} logical CPUs)"
            key = (width, jit, policy, replicas)
            if key not in results:
                print(f"| {width} | {strategy} | {policy} | {'yes' if jit else 'no'} "
                      f"| failed | - | - |")
                continue
            t = median(results[key])
            print(f"| {width} | {strategy} | {policy} | {'yes' if jit else 'no'} "
                  f"| {t * 1e3:.0f} | {BATCH * VIEWS / t:.1f} | {base / t:.2f}x |")
    for key, error in sorted(errors.items()):
        print(f"\nFailed: width={key[0]} jit_compile={key[1]} {key[2]} replicas={key[3]}: "
              f"`{error}`")
    print_machine_line()


if __name__ == "__main__":
    main()
