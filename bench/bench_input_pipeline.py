"""Benchmark: input-pipeline throughput (views/s) of the recipes, and how long a step waits.

Usage:

    python bench/bench_input_pipeline.py                      # sample + /tmp/cifar10 if there
    python bench/bench_input_pipeline.py --folder /data/cifar10 --batches 30
    python bench/bench_input_pipeline.py --folder "" --no-wait    # sample only, no model

Part 1, pipeline throughput. The pipelines are built as the recipes build them, from the
library calls directly (no absl flags): `keras_contrast.data.build_pipeline(source,
batch_size=128, view_fn=..., view_fn_batched=True, repeat=True, cache=..., seed=0)` with

- `none`: no view function (decode, shuffle, batch of `uint8` images: the source's cost),
- `supcon`: `supcon_cifar.py`'s view maker, `ViewMaker(32, blur=False, seed=0)` (the
  recipes' `builders.build_views`): 2 views,
- `clsa multi-crop`: `clsa_cifar.py --crops=multi`'s view maker, `ViewMaker(32,
  strong_crops=ViewMaker.clsa_crops(32, "multi"), seed=0)`: query and key weak views plus 5
  strong crops of 32, 27, 23, 18 and 14 px (the paper's 224/192/160/128/96 scaled to 32 px,
  with its crop scales): 7 views per image,

on two sources:

- `sample`: `keras_contrast.data.cifar10_sample("train")`, the 5,000 shipped images (decoded
  once into memory when the package loads them, so `cache` has little to save),
- `folder`: `keras_contrast.data.folder_source(--folder, "train", validation_per_class=500,
  shuffle_files=True, seed=0)` (the recipes' `--dataset=folder:` source: one JPEG read and
  decode per example), limited to the first `--folder-limit` (default 5,000) files of each
  shuffled pass so that a cached epoch stays short. Without `cache` every pass reads a
  fresh random subset, so the decode cost per image is that of the whole folder. Rows are
  skipped when the folder is absent.

Each (source, pipeline, cache) row: iterate the dataset eagerly; warm-up = 10 batches, or,
with `cache=True`, one full epoch plus 2 batches (the cache fills during the first epoch and
the rows report the steady state after it); then time `--batches` batches (default 20).
views/s = timed batches x 128 x views per image / wall time; images/s likewise without the
views factor. With `--rounds N` the rows are measured N times (alternate rounds reversed)
and the median time is kept.

Part 2, wait fraction (unless `--no-wait`): `SupConModel` (CIFAR `ResNet(depth=18,
width=16)`, `ProjectionHead(128)`, `SupConLoss(0.1)`, SGD) trained with `model.fit`:

- model-only step: fit on one constant in-memory batch of 128 x 2 float32 views
  (`Dataset.from_tensors(...).repeat()`), so the input costs nothing;
- combined step: the same compiled model, fit on the `supcon` pipeline (sample, `cache=True`
  as in the recipe's default; and the folder without cache, the worst case);
- pipeline-only batch time: from part 1 (the same pipeline, no model running).

Step times: one `fit` of 3 + `--fit-steps` steps (default 8); the time from the end of the
3rd step to the end of the last (`on_train_batch_end`), divided by the timed steps. The
warm-up steps absorb tracing and a new iterator's start-up (the 10,000-example shuffle
buffer fills before the first batch: seconds for JPEGs), which each `fit` call repeats but a
real epoch amortises over hundreds of steps. `--wait-only` runs part 2 alone (measuring the
two pipeline-only times itself). wait fraction = max(0, 1 - model_only / combined): the
share of a combined step not explained by the model's own compute, i.e. time spent waiting
for (or competing with) the input pipeline. On a CPU, tf.data and the model share the same
cores, so the pipeline slows the model down even when it keeps up: the combined step can
exceed max(model, pipeline); "ideal overlap" = max(model_only, pipeline_only) is the step
time if the two ran on separate hardware (as on a GPU machine with free host cores).
"""

import argparse
import os
import sys
import time
from statistics import median

from _common import print_machine_line, repo_root

BATCH = 128
SIZE = 32
SEED = 0
NUM_MULTI_CROPS = 5


def supcon_view_fn(size=SIZE, seed=SEED):
    """The view maker of `supcon_cifar.py` (`builders.build_views`: no blur, 2 weak views)."""
    import keras_contrast as kc

    return kc.data.ViewMaker(size, blur=False, seed=seed)


def clsa_multi_view_fn(size=SIZE, seed=SEED):
    """The view maker of `clsa_cifar.py --crops=multi`: 2 weak views + 5 strong crops."""
    import keras_contrast as kc

    return kc.data.ViewMaker(
        size, strong_crops=kc.data.ViewMaker.clsa_crops(size, "multi"), seed=seed
    )


PIPELINES = {  # name -> (view function factory or None, views per image)
    "none": (None, 1),
    "supcon": (supcon_view_fn, 2),
    "clsa multi-crop": (clsa_multi_view_fn, 2 + NUM_MULTI_CROPS),
}


def make_source(name, folder, folder_limit):
    import keras_contrast as kc

    if name == "sample":
        dataset, info = kc.data.cifar10_sample("train")
        return dataset, info.num_examples
    dataset, info = kc.data.folder_source(
        folder, "train", validation_per_class=500, shuffle_files=True, seed=SEED
    )
    limit = min(folder_limit, info.num_examples)
    return dataset.take(limit), limit


def build(source, pipeline, cache):
    import keras_contrast as kc

    factory, _ = PIPELINES[pipeline]
    return kc.data.build_pipeline(
        source,
        batch_size=BATCH,
        view_fn=None if factory is None else factory(),
        view_fn_batched=True,
        repeat=True,
        cache=cache,
        seed=SEED,
    )


def time_pipeline(source_name, pipeline, cache, folder, folder_limit, batches):
    """Seconds per batch of one pipeline, after its warm-up."""
    source, examples = make_source(source_name, folder, folder_limit)
    dataset = build(source, pipeline, cache)
    iterator = iter(dataset)
    warmup = (examples // BATCH + 2) if cache else 10
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return (time.perf_counter() - start) / batches


def fit_step_time(model, dataset, steps, warmup=3):
    """Seconds per step of `model.fit` on `dataset`, in steady state.

    One `fit` of `warmup + steps` steps; the time runs from the end of the last warm-up
    step to the end of the last step (`on_train_batch_end`: the eager call of the train
    function returns when the step has run). The warm-up steps absorb tracing and the
    start-up of a new iterator (filling the 10,000-example shuffle buffer), which every
    `fit` call repeats and an epoch of the recipe amortises over hundreds of steps.
    """
    import keras

    stamps = []

    class Stamps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            float(logs["loss"])
            stamps.append(time.perf_counter())

    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0,
              callbacks=[Stamps()])
    return (stamps[-1] - stamps[warmup - 1]) / steps


def wait_fraction_rows(sources, folder, folder_limit, steps, pipeline_times):
    import keras
    import numpy as np
    import tensorflow as tf

    import keras_contrast as kc

    keras.utils.set_random_seed(SEED)
    model = kc.models.SupConModel(
        encoder=kc.models.ResNet(depth=18, width=16, image_shape=(SIZE, SIZE, 3)),
        head=kc.models.ProjectionHead(output_dim=128),
        loss=kc.losses.SupConLoss(temperature=0.1),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    rng = np.random.default_rng(SEED)
    views = rng.integers(0, 256, size=(BATCH, 2, SIZE, SIZE, 3)).astype("float32")
    labels = rng.integers(0, 10, size=BATCH).astype("int32")
    constant = tf.data.Dataset.from_tensors((tf.constant(views), tf.constant(labels))).repeat()
    model_only = fit_step_time(model, constant, steps)
    rows = []
    for source_name, cache in sources:
        source, _ = make_source(source_name, folder, folder_limit)
        combined = fit_step_time(model, build(source, "supcon", cache), steps)
        pipeline_only = pipeline_times.get((source_name, "supcon", cache))
        if pipeline_only is None:  # --wait-only: measure the pipeline alone here.
            pipeline_only = time_pipeline(source_name, "supcon", cache, folder, folder_limit,
                                          20)
        rows.append((source_name, cache, pipeline_only, model_only, combined))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default="/tmp/cifar10",
                        help="CIFAR-10 in ImageFolder layout; rows skipped if absent ('' = skip)")
    parser.add_argument("--folder-limit", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per row")
    parser.add_argument("--fit-steps", type=int, default=8, help="timed fit steps (part 2)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-wait", action="store_true", help="skip part 2 (the model)")
    parser.add_argument("--wait-only", action="store_true", help="only part 2")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    sys.path.insert(0, repo_root())

    sources = ["sample"]
    if args.folder and os.path.isdir(args.folder):
        sources.append("folder")
    else:
        print(f"Folder {args.folder!r} not found: skipping the folder rows.", file=sys.stderr)
    rows = [] if args.wait_only else [
        (s, p, c) for s in sources for p in PIPELINES for c in (False, True)
    ]
    times = {}
    for round_index in range(args.rounds):
        for row in rows if round_index % 2 == 0 else rows[::-1]:
            t = time_pipeline(*row[:3], args.folder, args.folder_limit, args.batches)
            times.setdefault(row, []).append(t)
            print(f"  {row[0]:>6} {row[1]:>16} cache={int(row[2])} {t * 1e3:9.1f} ms/batch",
                  file=sys.stderr)
    times = {row: median(values) for row, values in times.items()}

    if rows:
        print("| source | pipeline | views/image | cache | batch of 128 (ms) | images/s "
              "| views/s | cache speed-up |")
        print("|---|---|---:|:---:|---:|---:|---:|---:|")
    for source, pipeline, cache in rows:
        t = times[(source, pipeline, cache)]
        views = PIPELINES[pipeline][1]
        speedup = f"{times[(source, pipeline, False)] / t:.2f}x" if cache else ""
        label = "sample (5,000 in memory)" if source == "sample" else (
            f"folder ({args.folder_limit:,} JPEGs/pass)")
        print(f"| {label} | {pipeline} | {views} | {'yes' if cache else 'no'} | {t * 1e3:.1f} "
              f"| {BATCH / t:.0f} | {BATCH * views / t:.0f} | {speedup} |")

    if not args.no_wait:
        wait_sources = [("sample", True)] + ([("folder", False)] if "folder" in sources else [])
        wait_rows = wait_fraction_rows(wait_sources, args.folder, args.folder_limit,
                                       args.fit_steps, times)
        print()
        print("| supcon input | pipeline only (ms/batch) | model only (ms/step) "
              "| combined fit (ms/step) | ideal overlap (ms) | wait fraction |")
        print("|---|---:|---:|---:|---:|---:|")
        for source, cache, pipeline_only, model_only, combined in wait_rows:
            wait = max(0.0, 1.0 - model_only / combined)
            print(f"| {source}, cache={'yes' if cache else 'no'} | {pipeline_only * 1e3:.0f} "
                  f"| {model_only * 1e3:.0f} | {combined * 1e3:.0f} "
                  f"| {max(model_only, pipeline_only) * 1e3:.0f} | {wait:.2f} |")
    print_machine_line()


if __name__ == "__main__":
    main()
