"""Cost of each registry op on the XLA path, per image; prints Markdown.

    python bench/bench_augment_ops.py [--size 224] [--batch 32] [--repeats 6] [--ops rotate,equalize]

Each row runs `augment_ops.apply_ops` (the XLA program the layers run) on a
batch of random uint8 images in which every image applies the one op, inside a
`tf.function` (as `tf.data` traces it), and reports the best of `--repeats`
calls in microseconds per image, net of the same program with the `identity`
op (first row: the loop itself, i.e. reading, converting and writing each
image). One intra-op and one inter-op thread: the figures are per core.
Magnitudes are fixed mid-range values (rotation 17 degrees, shear 0.2,
translation 30 px, factors 0.6-1.7). The machine may be shared: compare rows of
one run.
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_contrast.layers import augment_ops  # noqa: E402

VALUES = {
    "brightness": 1.3,
    "color": 0.6,
    "contrast": 1.4,
    "sharpness": 1.7,
    "posterize": 4,
    "solarize": 128,
    "shear_x": 0.2,
    "shear_y": 0.2,
    "translate_x": 30,
    "translate_y": 30,
}


def _values(name, batch, size):
    values = np.zeros((batch, 1, augment_ops.NUM_VALUES))
    if name == "rotate":
        values[:, 0, :2] = augment_ops.rotation_values(17)
    elif name == "cutout":
        values[:, 0, :5] = (size // 4, size // 4, size // 2, size // 2, 128)
    elif name in VALUES:
        values[:, 0, 0] = VALUES[name]
    return values


def _microseconds(images, name, repeats):
    batch, size = images.shape[0], images.shape[1]
    ops = np.full((batch, 1), augment_ops.OP_INDEX[name], np.int32)
    apply = np.ones((batch, 1), bool)
    values = _values(name, batch, size)
    run = tf.function(lambda: augment_ops.apply_ops(images, ops, apply, values))
    run()  # Tracing and the XLA compile.
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - start)
    return best / batch * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    args = parser.parse_args()
    names = args.ops.split(",") if args.ops else [op.name for op in augment_ops.OPS]
    unknown = sorted(set(names) - set(augment_ops.OP_INDEX))
    if unknown:
        raise ValueError(f"--ops: unknown op names {unknown}. Known: {sorted(augment_ops.OP_INDEX)}")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, (args.batch, args.size, args.size, 3), np.uint8))
    loop = _microseconds(images, "identity", args.repeats)
    print(f"| op ({args.size}x{args.size}, batch {args.batch}) | us per image |")
    print("|---|---:|")
    print(f"| the loop (identity) | {loop:,.1f} |")
    for name in names:
        if name != "identity":
            net = _microseconds(images, name, args.repeats) - loop
            print(f"| {name} (net of the loop) | {net:,.1f} |")


if __name__ == "__main__":
    main()
