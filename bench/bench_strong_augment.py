"""Throughput of StrongAugment vs keras RandAugment vs Pillow; prints Markdown.

    python bench/bench_strong_augment.py [--sizes 32 224] [--seconds 8]

Batch 256, uint8 random images, tf.data with AUTOTUNE parallelism on all
cores for the TF rows; Pillow runs on ONE core (a plain Python loop). The
machine may be shared: compare ratios from the same run.

TensorFlow's BFC CPU allocator is switched on (`TF_CPU_ALLOCATOR_USE_BFC`,
as the recipes do) unless the environment already sets it: run with
`TF_CPU_ALLOCATOR_USE_BFC=false` to measure the default allocator.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_contrast.layers import StrongAugment  # noqa: E402
from pillow_strong_augment import PillowStrongAugment  # noqa: E402

BATCH = 256


def _rate(next_batch, seconds, min_batches=2):
    next_batch()  # Warm up (tracing).
    count, start = 0, time.perf_counter()
    while count < min_batches or time.perf_counter() - start < seconds:
        next_batch()
        count += 1
    return count * BATCH / (time.perf_counter() - start)


def _tf_rate(images, make_ds, seconds):
    it = iter(make_ds(tf.data.Dataset.from_tensors(images).repeat()))
    return _rate(lambda: next(it), seconds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    auto = tf.data.AUTOTUNE
    rows = []
    for size in args.sizes:
        images = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3)).astype("uint8")
        strong = StrongAugment(seed=0)
        per_image = StrongAugment(seed=0)
        graph = StrongAugment(seed=0, jit_compile=False)
        rand_aug = keras.layers.RandAugment(num_ops=5, value_range=(0, 255), seed=0)
        pil = PillowStrongAugment(seed=0)
        r = {
            "StrongAugment, batched (tf.data)": _tf_rate(
                images, lambda d: d.map(strong, num_parallel_calls=auto).prefetch(2), args.seconds),
            "StrongAugment, image by image (tf.data)": _tf_rate(
                images, lambda d: d.unbatch().map(per_image, num_parallel_calls=auto)
                .batch(BATCH).prefetch(2), args.seconds),
            "StrongAugment(jit_compile=False), batched (tf.data)": _tf_rate(
                images, lambda d: d.map(graph, num_parallel_calls=auto).prefetch(2), args.seconds),
            "keras.layers.RandAugment(num_ops=5) (tf.data)": _tf_rate(
                images, lambda d: d.map(rand_aug, num_parallel_calls=auto).prefetch(2), args.seconds),
            "Pillow, same 14 ops (1 core)": _rate(lambda: pil.batch(images), args.seconds, 1),
        }
        rows.append((size, r))
    allocator = os.environ["TF_CPU_ALLOCATOR_USE_BFC"]
    print(f"\nBatch {BATCH}, {os.cpu_count()} CPU cores, TF_CPU_ALLOCATOR_USE_BFC={allocator}, "
          "images/s (higher is better)\n")
    print("| op | " + " | ".join(f"{s}x{s}" for s, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in rows[0][1]:
        print(f"| {name} | " + " | ".join(f"{r[name]:,.0f}" for _, r in rows) + " |")
    for label, num, den in (
        ("StrongAugment / Pillow (1 core)", "StrongAugment, batched (tf.data)", "Pillow, same 14 ops (1 core)"),
        ("StrongAugment / keras RandAugment", "StrongAugment, batched (tf.data)", "keras.layers.RandAugment(num_ops=5) (tf.data)"),
        ("batched / image by image", "StrongAugment, batched (tf.data)", "StrongAugment, image by image (tf.data)"),
        ("XLA / graph path", "StrongAugment, batched (tf.data)", "StrongAugment(jit_compile=False), batched (tf.data)"),
    ):
        print(f"| ratio: {label} | " + " | ".join(f"{r[num] / r[den]:.2f}x" for _, r in rows) + " |")


if __name__ == "__main__":
    main()
