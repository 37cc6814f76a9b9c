"""Benchmark: SupCon step time vs global batch under MirroredStrategy with 1, 2, 4 replicas.

Usage:

    python bench/bench_scaling.py                        # replicas 1 2 4, batches 32 64 128
    python bench/bench_scaling.py --replicas 1 2 --batches 64 --steps 3

The CPU is split into R logical devices (`tf.config.set_logical_device_configuration`, set
before TensorFlow's runtime starts, so each replica count runs in its own fresh subprocess)
and `MirroredStrategy` runs one replica on each (R = 1 is MirroredStrategy on one device).
Every replica shares the same physical cores, so adding replicas adds no compute: the table
shows the cost of replication itself (per-replica graphs, all-gathers, gradient all-reduce)
and how it depends on the batch. Two measurements per (R, global batch B):

- `full step`: `model.fit` of `SupConModel` (CIFAR `ResNet(depth=18, width=8)`, a small
  encoder, `ProjectionHead(128)`, `SupConLoss(0.1)`, SGD) on one constant in-memory batch of
  B x 2 random `uint8` 32x32 views (`Dataset.from_tensors(...).repeat()`; Keras splits it
  into B / R per replica). Step time = wall time of a timed `fit` of `--steps` steps
  (default 5) after an untimed warm-up `fit` of 2 steps.
- `loss only`: forward + backward (gradient w.r.t. the features) of
  `keras_contrast.losses.supcon_loss` on constant L2-normalised features [B, 2, 128], each
  replica holding B / R rows (`experimental_distribute_values_from_function`), run with
  `strategy.run` inside one `tf.function`, with `gather_across_replicas=True` (each replica
  all-gathers the global batch: its B/R anchors contrast against all 2B views, and the
  gradient of the gather is summed across replicas) and `False` (each replica contrasts
  only against its own B/R samples: cheaper, but a different loss with fewer negatives).
  Time = median of 20 calls after 3 warm-up calls.

Ratios are against R = 1 at the same global batch.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from statistics import median

from _common import print_machine_line, repo_root

VIEWS = 2
SIZE = 32
DIM = 128
NUM_CLASSES = 10
WIDTH = 8


def worker(replicas, batches, steps, seed):
    """All measurements for one replica count, in this (fresh) process; prints JSON lines."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
    )
    import keras
    import numpy as np

    import keras_contrast as kc

    keras.utils.set_random_seed(seed)
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
    assert strategy.num_replicas_in_sync == replicas
    rng = np.random.default_rng(seed)
    for batch in batches:
        # Loss only, gather on and off.
        features = rng.normal(size=(batch, VIEWS, DIM)).astype("float32")
        features /= np.linalg.norm(features, axis=-1, keepdims=True)
        labels = rng.integers(0, NUM_CLASSES, size=batch).astype("int32")
        local = batch // replicas

        def value_fn(ctx, array=None):
            start = ctx.replica_id_in_sync_group * local
            return tf.constant(array[start:start + local])

        dist_features = strategy.experimental_distribute_values_from_function(
            lambda ctx: value_fn(ctx, features))
        dist_labels = strategy.experimental_distribute_values_from_function(
            lambda ctx: value_fn(ctx, labels))
        for gather in (True, False):

            def replica_step(labels, features, gather=gather):
                with tf.GradientTape() as tape:
                    tape.watch(features)
                    loss = tf.reduce_sum(kc.losses.supcon_loss(
                        labels, features, temperature=0.1, gather_across_replicas=gather
                    )) / batch
                return loss, tf.reduce_sum(tf.abs(tape.gradient(loss, features)))

            @tf.function
            def step(labels, features):
                loss, grad_norm = strategy.run(replica_step, args=(labels, features))
                return (strategy.reduce("SUM", loss, axis=None),
                        strategy.reduce("SUM", grad_norm, axis=None))

            for _ in range(3):
                [t.numpy() for t in step(dist_labels, dist_features)]
            times = []
            for _ in range(20):
                start = time.perf_counter()
                [t.numpy() for t in step(dist_labels, dist_features)]
                times.append(time.perf_counter() - start)
            times.sort()
            print("RESULT " + json.dumps(dict(
                replicas=replicas, batch=batch, kind=f"loss gather={gather}",
                step_s=times[len(times) // 2])), flush=True)

        # Full SupConModel step.
        views = rng.integers(0, 256, size=(batch, VIEWS, SIZE, SIZE, 3)).astype("float32")
        dataset = tf.data.Dataset.from_tensors(
            (tf.constant(views), tf.constant(labels))).repeat()
        with strategy.scope():
            model = kc.models.SupConModel(
                encoder=kc.models.ResNet(depth=18, width=WIDTH, image_shape=(SIZE, SIZE, 3)),
                head=kc.models.ProjectionHead(output_dim=DIM),
                loss=kc.losses.SupConLoss(temperature=0.1),
            )
            model.build((None, SIZE, SIZE, 3))
            model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        model.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)
        start = time.perf_counter()
        history = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0)
        float(history.history["loss"][-1])
        print("RESULT " + json.dumps(dict(
            replicas=replicas, batch=batch, kind="full step",
            step_s=(time.perf_counter() - start) / steps)), flush=True)


def run_one(replicas, batches, steps, seed):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(replicas),
           ",".join(map(str, batches)), str(steps), str(seed)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo_root())
    results = [json.loads(line[len("RESULT "):]) for line in out.stdout.splitlines()
               if line.startswith("RESULT ")]
    if out.returncode:
        raise RuntimeError(f"replicas={replicas} failed:\n{out.stderr[-3000:]}")
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--steps", type=int, default=5, help="timed fit steps")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        replicas, batches, steps, seed = args.worker
        worker(int(replicas), [int(b) for b in batches.split(",")], int(steps), int(seed))
        return
    for batch in args.batches:
        for replicas in args.replicas:
            if batch % replicas:
                parser.error(f"--batches must be divisible by every --replicas: {batch}")
    results = {}
    for round_index in range(args.rounds):
        order = args.replicas if round_index % 2 == 0 else args.replicas[::-1]
        for replicas in order:
            for r in run_one(replicas, args.batches, args.steps, seed=round_index):
                results.setdefault((r["kind"], r["batch"], r["replicas"]), []).append(
                    r["step_s"])
                print(f"  R={replicas} B={r['batch']:<4} {r['kind']:>18} "
                      f"{r['step_s'] * 1e3:9.1f} ms", file=sys.stderr)
    kinds = ["full step", "loss gather=True", "loss gather=False"]
    names = {
        "full step": f"full step (ResNet-18 w{WIDTH}, fit)",
        "loss gather=True": "loss only, gather_across_replicas=True",
        "loss gather=False": "loss only, gather_across_replicas=False",
    }
    header = " | ".join(f"R={r} (ms)" for r in args.replicas)
    ratios = " | ".join(f"R={r} vs R=1" for r in args.replicas if r != 1)
    print(f"| measurement | global batch x views | {header} | {ratios} |")
    print("|---|---:|" + "---:|" * (len(args.replicas) + len(args.replicas) - 1))
    for kind in kinds:
        for batch in args.batches:
            t = {r: median(results[(kind, batch, r)]) for r in args.replicas}
            cells = " | ".join(f"{t[r] * 1e3:.1f}" for r in args.replicas)
            rel = " | ".join(f"{t[r] / t[1]:.2f}x" for r in args.replicas if r != 1) \
                if 1 in t else ""
            print(f"| {names[kind]} | {batch} x {VIEWS} | {cells} | {rel} |")
    print_machine_line()


if __name__ == "__main__":
    main()
