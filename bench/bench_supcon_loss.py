"""Benchmark: SupCon loss forward+backward time and peak memory, naive vs keras_contrast.

Usage:

    python bench/bench_supcon_loss.py             # batches 256 1024 4096, 2 views, dim 128
    python bench/bench_supcon_loss.py --jit --rounds 2   # + jit_compile rows, 2 rounds
    python bench/bench_supcon_loss.py --batches 256      # quick look

Rows, per batch size B (x 2 views, dim 128, labels uniform in 10 classes, features
L2-normalised, temperature 0.1, loss = mean over the batch, gradient w.r.t. the features):

- `naive`: the straightforward full-matrix SupCon written below in this script, as the
  google-research `supcon/losses.py` and most reference code do it: tiled float masks
  `[VB, VB]` (one-hot diagonal, `tile` of the label mask, `1 - mask` negatives), full
  `[VB, VB]` logits, `exp_logits` and log-probabilities, masked sums. Same maths as
  `supcon_loss` with default options (checked at start-up against it).
- `supcon_loss (default)`: `keras_contrast.losses.supcon_loss` with default options
  (`chunk_size="auto"`: unchunked up to a global batch of 2,048, blocks of 512 above).
- `supcon_loss chunk_size=None`: always unchunked (the default before `"auto"`).
- `supcon_loss chunk_size=K`: the blockwise variant, which keeps only O(K x VB) of the
  logits alive and recomputes each block for the gradient.

Each function runs inside `tf.function` (with `--jit`, again with `jit_compile=True`: the
`xla` rows).

Time: median wall time (ms) of the timed calls of one compiled fwd+bwd step (the result is
fetched with `.numpy()`, so the step has finished); fewer calls at B=4096.

Peak memory (CPU: TensorFlow keeps no CPU memory statistics): every (implementation, batch,
xla) measurement runs in a fresh subprocess. The subprocess runs one untimed warm-up step at
the full size (tracing, XLA compilation and one-off runtime allocations happen there), then
resets the kernel's peak-RSS counter (`echo 5 > /proc/self/clear_refs` sets VmHWM to the
current RSS), reads VmRSS, runs the timed steps and reads VmHWM from /proc/self/status.
"peak MiB" = VmHWM - VmRSS before: the largest resident-memory increase during fwd+bwd.
The subprocess runs with `MALLOC_MMAP_THRESHOLD_=65536`, so glibc serves TensorFlow's large
buffers with mmap and returns them to the OS when freed; otherwise buffers freed after the
warm-up stay in the heap and hide later peaks. Without /proc/self/clear_refs (not Linux),
the fallback is ru_maxrss after the first full-size step minus RSS before it.

With `--rounds N` the subprocesses run N times in interleaved order (alternate rounds
reverse the implementation order); the table reports the median over all timed calls of
all rounds and the median peak over rounds. Ratios are against `naive`
with the same batch and the same xla setting.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from statistics import median

from _common import print_machine_line, repo_root

DIM = 128
VIEWS = 2
NUM_CLASSES = 10
TEMPERATURE = 0.1


def naive_supcon(labels, features, temperature=TEMPERATURE, num_classes=NUM_CLASSES):
    """Full-matrix SupCon (L_out, all views as anchors, denominator over all but self)."""
    import tensorflow as tf

    batch, views = features.shape[0], features.shape[1]
    one_hot = tf.one_hot(labels, num_classes)
    mask = tf.matmul(one_hot, one_hot, transpose_b=True)  # [B, B] float
    all_features = tf.reshape(tf.transpose(features, [1, 0, 2]), [views * batch, -1])
    logits = tf.matmul(all_features, all_features, transpose_b=True) / temperature
    logits = logits - tf.reduce_max(tf.stop_gradient(logits), axis=1, keepdims=True)
    exp_logits = tf.exp(logits)
    # Tiled float masks, [VB, VB].
    tiled_labels = tf.concat([tf.range(batch) + batch * v for v in range(views)], axis=0)
    all_but_diagonal = 1.0 - tf.one_hot(tiled_labels, views * batch)
    uncapped_positives = tf.tile(mask, [views, views])
    negatives = 1.0 - uncapped_positives
    positives = uncapped_positives * all_but_diagonal
    num_positives = tf.reduce_sum(positives, axis=1)
    denominator = tf.reduce_sum(exp_logits * negatives, axis=1, keepdims=True) + tf.reduce_sum(
        exp_logits * positives, axis=1, keepdims=True
    )
    log_probs = (logits - tf.math.log(denominator)) * positives
    log_probs = tf.math.divide_no_nan(tf.reduce_sum(log_probs, axis=1), num_positives)
    return tf.reduce_mean(tf.reshape(-log_probs, [views, batch]), axis=0)


def loss_fn(impl):
    if impl == "naive":
        return naive_supcon
    from keras_contrast.losses import supcon_loss

    if impl == "supcon_loss":
        return lambda labels, features: supcon_loss(labels, features, temperature=TEMPERATURE)
    value = impl.split("=")[1]
    chunk = None if value == "None" else int(value)
    return lambda labels, features: supcon_loss(
        labels, features, temperature=TEMPERATURE, chunk_size=chunk
    )


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def worker(impl, batch, jit, repeats, seed):
    """One measurement in this (fresh) process; prints a JSON line."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    features = rng.normal(size=(batch, VIEWS, DIM)).astype("float32")
    features /= np.linalg.norm(features, axis=-1, keepdims=True)
    features = tf.constant(features)
    labels = tf.constant(rng.integers(0, NUM_CLASSES, size=batch), tf.int32)
    fn = loss_fn(impl)

    @tf.function(jit_compile=jit)
    def step(labels, features):
        with tf.GradientTape() as tape:
            tape.watch(features)
            loss = tf.reduce_mean(fn(labels, features))
        return loss, tape.gradient(loss, features)

    rss_before = _status_kib("VmRSS")
    loss, grad = step(labels, features)  # warm-up: trace, compile, first run
    loss.numpy(), grad.numpy()
    if _reset_peak():
        rss_before = _status_kib("VmRSS")
        method = "clear_refs"
    else:
        import resource

        method = "first_step_ru_maxrss"
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss, grad = step(labels, features)
        loss.numpy(), grad.numpy()
        times.append((time.perf_counter() - start) * 1e3)
    if method == "clear_refs":
        peak_kib = _status_kib("VmHWM") - rss_before
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    print(
        "RESULT "
        + json.dumps(
            dict(
                impl=impl, batch=batch, jit=jit, times_ms=times, peak_mib=peak_kib / 1024,
                loss=float(loss.numpy()), method=method,
            )
        )
    )


def check_agreement():
    """The naive baseline and supcon_loss compute the same loss and gradient."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, VIEWS, DIM)).astype("float32")
    x = tf.constant(x / np.linalg.norm(x, axis=-1, keepdims=True))
    y = tf.constant(rng.integers(0, NUM_CLASSES, size=64), tf.int32)
    results = []
    for impl in ("naive", "supcon_loss", "chunk_size=24"):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_mean(loss_fn(impl)(y, x))
        results.append((loss.numpy(), tape.gradient(loss, x).numpy()))
    for loss, grad in results[1:]:
        np.testing.assert_allclose(loss, results[0][0], rtol=1e-5)
        np.testing.assert_allclose(grad, results[0][1], atol=1e-6)


def run_one(impl, batch, jit, repeats, seed):
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", TF_CPP_MIN_LOG_LEVEL="3")
    env.setdefault("KERAS_BACKEND", "tensorflow")
    cmd = [
        sys.executable, os.path.abspath(__file__), "--worker", impl, str(batch),
        str(int(jit)), str(repeats), str(seed),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=repo_root())
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"{impl} B={batch} jit={jit} failed:\n{out.stderr[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--chunk-size", type=int, default=512)
    parser.add_argument("--jit", action="store_true", help="add jit_compile=True rows")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, batch, jit, repeats, seed = args.worker
        worker(impl, int(batch), bool(int(jit)), int(repeats), int(seed))
        return

    sys.path.insert(0, repo_root())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    check_agreement()
    impls = ["naive", "supcon_loss", "chunk_size=None", f"chunk_size={args.chunk_size}"]
    jits = [False, True] if args.jit else [False]
    results = {}

    for round_index in range(args.rounds):
        for batch in args.batches:
            repeats = 3 if batch >= 4096 else (5 if batch >= 1024 else 10)
            order = impls if round_index % 2 == 0 else impls[::-1]
            for jit in jits:
                for impl in order:
                    r = run_one(impl, batch, jit, repeats, seed=round_index)
                    key = (impl, batch, jit)
                    entry = results.setdefault(key, {"times": [], "peaks": []})
                    entry["times"] += r["times_ms"]
                    entry["peaks"].append(r["peak_mib"])
                    print(f"  {impl:>16} B={batch:<5} xla={int(jit)} "
                          f"{median(r['times_ms']):9.1f} ms "
                          f"{r['peak_mib']:8.1f} MiB ({r['method']})", file=sys.stderr)
    print("| batch x views | implementation | xla | time (ms, median) | peak MiB "
          "| time vs naive | peak vs naive |")
    print("|---:|---|:---:|---:|---:|---:|---:|")
    for batch in args.batches:
        for jit in jits:
            base_time = median(results[("naive", batch, jit)]["times"])
            base_peak = median(results[("naive", batch, jit)]["peaks"])
            for impl in impls:
                entry = results[(impl, batch, jit)]
                t, p = median(entry["times"]), median(entry["peaks"])
                name = "naive (full [VB, VB] float masks)" if impl == "naive" else (
                    "supcon_loss (default)" if impl == "supcon_loss" else f"supcon_loss {impl}"
                )
                print(f"| {batch} x {VIEWS} | {name} | {'yes' if jit else 'no'} | {t:.1f} "
                      f"| {p:.0f} | {t / base_time:.2f}x | {p / base_peak:.2f}x |")
    print_machine_line()


if __name__ == "__main__":
    main()
