"""Throughput of StrongAugment and AutoAugment vs keras RandAugment vs Pillow; prints Markdown.

    python bench/bench_strong_augment.py [--sizes 32 224] [--seconds 8] [--intra_op_threads 1]

Batch 256 random images, tf.data with AUTOTUNE parallelism on all cores for the
TF rows, on `uint8` input (`dtype="uint8"`: uint8 out) and on `float32` input
(float32 out, the layer's default dtype). Pillow starts from decoded PIL images
(what a data loader hands its transforms) and ends with uint8 arrays; it runs on
ONE core (a plain Python loop) and, for StrongAugment, also as two worker
processes (a data loader with 2 workers), and once more ending with float32
arrays (what a float32 pipeline hands the model). "Per core" ratios divide the
TF rate by the number of cores. The machine may be shared: compare ratios from
the same run.

`--intra_op_threads N` sets TensorFlow's intra-op thread pool to N threads
(`tf.config.threading.set_intra_op_parallelism_threads`) for the whole process,
as a process that only produces augmented batches may: XLA on CPU splits each
program's large loops over that pool, which costs throughput when tf.data
already runs one program per core.

TensorFlow's BFC CPU allocator is switched on (`TF_CPU_ALLOCATOR_USE_BFC`,
as the recipes do) unless the environment already sets it: run with
`TF_CPU_ALLOCATOR_USE_BFC=false` to measure the default allocator.
"""

import argparse
import multiprocessing
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from PIL import Image  # noqa: E402

from keras_contrast.layers import AutoAugment, StrongAugment  # noqa: E402
from pillow_strong_augment import PillowAutoAugment, PillowStrongAugment  # noqa: E402

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


def _pillow_worker(args):
    images, seconds, seed = args
    pil = PillowStrongAugment(seed=seed)
    pil.batch(images[:8])
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        pil.batch(images)
        count += len(images)
    return count, time.perf_counter() - start


def _pillow_processes(images, seconds, processes):
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        results = pool.map(_pillow_worker, [(images, seconds, k) for k in range(processes)])
    return sum(count / elapsed for count, elapsed in results)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--intra_op_threads", type=int, default=0,
                        help="TensorFlow's intra-op threads (0: TensorFlow's default).")
    args = parser.parse_args()
    if args.intra_op_threads < 0:
        parser.error(f"--intra_op_threads must be >= 0. Received: {args.intra_op_threads}")
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    auto = tf.data.AUTOTUNE
    cores = os.cpu_count()
    rows = []
    for size in args.sizes:
        images = np.random.default_rng(0).integers(0, 256, (BATCH, size, size, 3)).astype("uint8")
        floats = images.astype("float32")
        decoded = [Image.fromarray(x) for x in images]
        strong_u8 = StrongAugment(seed=0, dtype="uint8")
        strong_f32 = StrongAugment(seed=0)
        per_image = StrongAugment(seed=0, dtype="uint8")
        graph = StrongAugment(seed=0, jit_compile=False, dtype="uint8")
        auto_u8 = AutoAugment("imagenet", seed=0, dtype="uint8")
        auto_f32 = AutoAugment("imagenet", seed=0)
        rand_aug = keras.layers.RandAugment(num_ops=5, value_range=(0, 255), seed=0)
        pil = PillowStrongAugment(seed=0)
        pil_auto = PillowAutoAugment("imagenet", seed=0)

        def batched(layer):
            return lambda d: d.map(layer, num_parallel_calls=auto).prefetch(2)

        r = {
            "StrongAugment, uint8, batched (tf.data)": _tf_rate(
                images, batched(strong_u8), args.seconds),
            "StrongAugment, float32, batched (tf.data)": _tf_rate(
                floats, batched(strong_f32), args.seconds),
            "StrongAugment, uint8 between casts from and to float32 (tf.data)": _tf_rate(
                floats, lambda d: d.map(
                    lambda x: tf.cast(strong_u8(tf.cast(x, tf.uint8)), tf.float32),
                    num_parallel_calls=auto).prefetch(2), args.seconds),
            "StrongAugment, uint8, image by image (tf.data)": _tf_rate(
                images, lambda d: d.unbatch().map(per_image, num_parallel_calls=auto)
                .batch(BATCH).prefetch(2), args.seconds),
            "StrongAugment(jit_compile=False), uint8, batched (tf.data)": _tf_rate(
                images, batched(graph), args.seconds),
            "keras.layers.RandAugment(num_ops=5), uint8 (tf.data)": _tf_rate(
                images, batched(rand_aug), args.seconds),
            "Pillow, same 14 ops (1 core)": _rate(lambda: pil.batch(decoded), args.seconds, 1),
            f"Pillow, same 14 ops ({cores} worker processes)": _pillow_processes(
                decoded, args.seconds, cores),
            "Pillow, same 14 ops, float32 arrays (1 core)": _rate(
                lambda: pil.batch(decoded, "float32"), args.seconds, 1),
            "AutoAugment(\"imagenet\"), uint8, batched (tf.data)": _tf_rate(
                images, batched(auto_u8), args.seconds),
            "AutoAugment(\"imagenet\"), float32, batched (tf.data)": _tf_rate(
                floats, batched(auto_f32), args.seconds),
            "Pillow, torchvision AutoAugment ops (1 core)": _rate(
                lambda: pil_auto.batch(decoded), args.seconds, 1),
        }
        rows.append((size, r))
    allocator = os.environ["TF_CPU_ALLOCATOR_USE_BFC"]
    threads = args.intra_op_threads or "TensorFlow's default"
    print(f"\nBatch {BATCH}, {cores} CPU cores, TF_CPU_ALLOCATOR_USE_BFC={allocator}, "
          f"intra-op threads: {threads}, images/s (higher is better)\n")
    print("| op | " + " | ".join(f"{s}x{s}" for s, _ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for name in rows[0][1]:
        print(f"| {name} | " + " | ".join(f"{r[name]:,.0f}" for _, r in rows) + " |")
    pillow, workers = "Pillow, same 14 ops (1 core)", f"Pillow, same 14 ops ({cores} worker processes)"
    ratios = (
        ("StrongAugment uint8 / Pillow, per core", "StrongAugment, uint8, batched (tf.data)",
         pillow, cores),
        ("StrongAugment float32 / Pillow, per core", "StrongAugment, float32, batched (tf.data)",
         pillow, cores),
        ("StrongAugment float32 / uint8 between two casts",
         "StrongAugment, float32, batched (tf.data)",
         "StrongAugment, uint8 between casts from and to float32 (tf.data)", 1),
        ("StrongAugment float32 / Pillow to float32, per core",
         "StrongAugment, float32, batched (tf.data)",
         "Pillow, same 14 ops, float32 arrays (1 core)", cores),
        (f"StrongAugment uint8 / Pillow with {cores} workers",
         "StrongAugment, uint8, batched (tf.data)", workers, 1),
        ("AutoAugment uint8 / Pillow AutoAugment, per core",
         "AutoAugment(\"imagenet\"), uint8, batched (tf.data)",
         "Pillow, torchvision AutoAugment ops (1 core)", cores),
        ("AutoAugment float32 / Pillow AutoAugment, per core",
         "AutoAugment(\"imagenet\"), float32, batched (tf.data)",
         "Pillow, torchvision AutoAugment ops (1 core)", cores),
        ("StrongAugment / keras RandAugment", "StrongAugment, uint8, batched (tf.data)",
         "keras.layers.RandAugment(num_ops=5), uint8 (tf.data)", 1),
        ("XLA / graph path", "StrongAugment, uint8, batched (tf.data)",
         "StrongAugment(jit_compile=False), uint8, batched (tf.data)", 1),
    )
    for label, num, den, divide in ratios:
        print(f"| ratio: {label} | "
              + " | ".join(f"{r[num] / divide / r[den]:.2f}x" for _, r in rows) + " |")


if __name__ == "__main__":
    main()
