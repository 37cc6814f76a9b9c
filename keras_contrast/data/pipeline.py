"""`build_pipeline` and `distribute`: batched, augmented, per-replica `tf.data` input."""

import numbers

import tensorflow as tf

from keras_contrast.data import _utils


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def per_replica_batch_size(batch_size, input_context=None):
    """The batch size one input pipeline must produce for a global `batch_size`.

    Args:
        batch_size: the global batch size, summed over all replicas.
        input_context: the `tf.distribute.InputContext` passed to the dataset function of
            `strategy.distribute_datasets_from_function`, or `None` (one replica).
            Defaults to `None`.

    Returns:
        `batch_size // input_context.num_replicas_in_sync`, or `batch_size` without a
        context.

    Example:

    ```python
    per_replica_batch_size(256, tf.distribute.InputContext(num_replicas_in_sync=8))  # 32
    ```
    """
    if not _is_positive_int(batch_size):
        raise ValueError(f"`batch_size` must be an int > 0. Received: batch_size={batch_size!r}")
    _utils.check_input_context(input_context)
    if input_context is None:
        return int(batch_size)
    replicas = input_context.num_replicas_in_sync
    if batch_size % replicas:
        raise ValueError(
            f"`batch_size` (the global batch) must be divisible by the {replicas} replicas "
            f"in sync. Received: batch_size={batch_size}"
        )
    return input_context.get_per_replica_batch_size(batch_size)


def build_pipeline(
    dataset,
    *,
    batch_size,
    view_fn=None,
    view_fn_batched=False,
    shuffle_buffer=10_000,
    repeat=False,
    cache=False,
    drop_remainder=True,
    seed=None,
    deterministic=False,
    input_context=None,
    shard=True,
):
    """Turns a source's `(image, label)` dataset into batched, augmented training input.

    The steps, in order:

    1. shard (only with an `input_context` of more than one input pipeline, and `shard`),
    2. `cache` (in memory or to a file; caches the decoded `uint8` source),
    3. shuffle (`shuffle_buffer` examples, re-shuffled each epoch, seeded by `seed`),
    4. `repeat`,
    5. `view_fn` on each example (unless `view_fn_batched`), `AUTOTUNE` parallel,
    6. batch to the per-replica batch size,
    7. `view_fn` on each batch (if `view_fn_batched`),
    8. prefetch (`AUTOTUNE`).

    `view_fn` is any callable or Keras layer mapping images to views, e.g. a view maker
    from `keras_contrast.layers`, or `lambda image: tf.stack([aug(image), aug(image)])`.
    Per example (the default) it receives one `uint8` image `[height, width, 3]`; with
    `view_fn_batched=True` it receives a batch `[batch, height, width, 3]`, which is faster
    for Keras preprocessing layers (they vectorise over the batch) and needed for
    batch-level operations such as mixing. Its output (a tensor, tuple or dict) replaces
    the image: the dataset yields `(view_fn(image), label)`. Without `view_fn` it yields
    `(images, labels)` batches of `uint8` images; images must then have one size.

    Deterministic mode (`deterministic=True`, with a `seed` when shuffling) gives the same
    batches on every run: `tf.data` keeps element order, the shuffle is seeded, and
    `view_fn` runs sequentially (one call at a time) so that seeded random layers draw
    their random numbers in a fixed order; this is slower. With `deterministic=False`
    (default) parallel calls may finish out of order, for throughput.

    Distribution: inside the dataset function of `strategy.distribute_datasets_from_function`
    (see `distribute`), pass its `input_context`: `batch_size` is the GLOBAL batch and each
    pipeline batches `batch_size // num_replicas_in_sync` examples, and with several input
    pipelines (multi-worker) each keeps its own shard. Without an `input_context` the
    dataset is batched by `batch_size` (one replica, or `strategy.experimental_distribute_dataset`
    which splits the batch itself). TPUs need static shapes: keep `drop_remainder=True`
    there (`distribute` checks).

    Args:
        dataset: a `tf.data.Dataset` of `(image, label)` pairs (from `load` or a source).
        batch_size: the global batch size (over all replicas), an int > 0.
        view_fn: a callable or Keras layer mapping an image (or a batch) to its views.
            Defaults to `None` (images unchanged).
        view_fn_batched: whether `view_fn` is applied to batches instead of single
            examples. Defaults to `False`.
        shuffle_buffer: examples in the shuffle buffer; `0` or `None` disables shuffling
            (for evaluation). Defaults to `10_000`.
        repeat: `False` (one pass), `True` (repeat forever; give `model.fit` a
            `steps_per_epoch`) or an int > 0 (that many passes). Defaults to `False`.
        cache: `False`, `True` (cache the source in memory) or a file path prefix (cache
            on disk). Defaults to `False`.
        drop_remainder: whether to drop the last partial batch (static batch shapes;
            needed on TPU and by contrastive losses that expect full batches). Pass
            `False` for evaluation on GPU/CPU so that no example is dropped. Defaults to
            `True`.
        seed: seed of the shuffle. Defaults to `None`.
        deterministic: whether the pipeline is reproducible (see above); needs `seed`
            when shuffling. Defaults to `False`.
        input_context: the `tf.distribute.InputContext` of a dataset function, or `None`.
            Defaults to `None`.
        shard: whether to shard by `input_context` (step 1). Set `False` if the source
            was already sharded (`load(..., input_context=...)`). Defaults to `True`.

    Returns:
        A `tf.data.Dataset` of `(views_or_images, labels)` batches.

    Example:

    ```python
    dataset, info = keras_contrast.data.load("cifar10_sample", "train")
    flip = keras.layers.RandomFlip("horizontal", seed=1)
    two_views = lambda images: tf.stack([flip(images), flip(images)], axis=1)
    train = build_pipeline(dataset, batch_size=256, view_fn=two_views,
                           view_fn_batched=True, cache=True, seed=1)
    for views, labels in train.take(1):
        views.shape  # (256, 2, 32, 32, 3)
    ```
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(
            f"`dataset` must be a `tf.data.Dataset`. Received: dataset={dataset!r}"
        )
    if view_fn is not None and not callable(view_fn):
        raise ValueError(
            f"`view_fn` must be None, a callable or a Keras layer. Received: view_fn={view_fn!r}"
        )
    if shuffle_buffer is not None and (
        not isinstance(shuffle_buffer, numbers.Integral)
        or isinstance(shuffle_buffer, bool)
        or shuffle_buffer < 0
    ):
        raise ValueError(
            "`shuffle_buffer` must be None or an int >= 0. "
            f"Received: shuffle_buffer={shuffle_buffer!r}"
        )
    if not (isinstance(repeat, bool) or _is_positive_int(repeat)):
        raise ValueError(
            f"`repeat` must be a bool or an int > 0. Received: repeat={repeat!r}"
        )
    if not isinstance(cache, (bool, str)) or cache == "":
        raise ValueError(
            "`cache` must be a bool or a non-empty file path prefix. "
            f"Received: cache={cache!r}"
        )
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool)):
        raise ValueError(f"`seed` must be None or an int. Received: seed={seed!r}")
    if deterministic and shuffle_buffer and seed is None:
        raise ValueError(
            "`seed` must be set when `deterministic=True` and shuffling "
            f"(shuffle_buffer={shuffle_buffer}). Received: seed=None"
        )
    local_batch = per_replica_batch_size(batch_size, input_context)

    if shard:
        dataset = _utils.shard(dataset, input_context)
    if cache is True:
        dataset = dataset.cache()
    elif cache:
        dataset = dataset.cache(cache)
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if repeat is True:
        dataset = dataset.repeat()
    elif repeat is not False:
        dataset = dataset.repeat(repeat)

    # Sequential calls keep a seeded random view_fn reproducible (see the docstring).
    parallel = None if deterministic else _utils.AUTOTUNE

    def apply_views(images, labels):
        return view_fn(images), labels

    if view_fn is not None and not view_fn_batched:
        dataset = dataset.map(apply_views, num_parallel_calls=parallel)
    dataset = dataset.batch(
        local_batch, drop_remainder=drop_remainder, num_parallel_calls=_utils.AUTOTUNE
    )
    if view_fn is not None and view_fn_batched:
        dataset = dataset.map(apply_views, num_parallel_calls=parallel)
    dataset = dataset.prefetch(_utils.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = bool(deterministic)
    return dataset.with_options(options)


def _is_tpu_strategy(strategy):
    return isinstance(strategy, (tf.distribute.TPUStrategy,)) or "TPUStrategy" in type(
        strategy
    ).__name__


def _check_static_batch(dataset):
    for spec in tf.nest.flatten(dataset.element_spec):
        if spec.shape.rank is None or spec.shape.rank == 0 or spec.shape[0] is None:
            raise ValueError(
                "TPUs need batches of a static size: build the dataset with "
                "`build_pipeline(..., drop_remainder=True)`. Received: element_spec="
                f"{dataset.element_spec}"
            )


def distribute(strategy, make_dataset_fn, *, options=None):
    """Builds one input pipeline per worker with `distribute_datasets_from_function`.

    `make_dataset_fn(input_context)` is called once per input pipeline (worker) and must
    return that pipeline's per-replica batches; `build_pipeline(..., input_context=
    input_context)` does exactly that (per-replica batch size from the global batch, and
    sharding across workers). Under a `TPUStrategy` the batch dimension must be static
    (`drop_remainder=True`), which this checks with a clear error.

    The result goes straight to `model.fit` / `model.evaluate` of a model built under
    `strategy.scope()`, or is iterated in a custom loop with `strategy.run`.

    Args:
        strategy: a `tf.distribute.Strategy` (e.g. from `keras_contrast.distribute.make_strategy`).
        make_dataset_fn: a callable `input_context -> tf.data.Dataset`.
        options: optional `tf.distribute.InputOptions`. Defaults to `None`.

    Returns:
        A `tf.distribute.DistributedDataset`.

    Example:

    ```python
    strategy = keras_contrast.distribute.make_strategy("mirrored")

    def make_dataset(input_context):
        dataset, _ = keras_contrast.data.load("cifar10_sample", "train")
        return build_pipeline(dataset, batch_size=512, view_fn=views, seed=0,
                              input_context=input_context)

    train = distribute(strategy, make_dataset)
    ```
    """
    if not isinstance(strategy, tf.distribute.Strategy):
        raise ValueError(
            f"`strategy` must be a `tf.distribute.Strategy`. Received: strategy={strategy!r}"
        )
    if not callable(make_dataset_fn):
        raise ValueError(
            "`make_dataset_fn` must be a callable taking an input context. "
            f"Received: make_dataset_fn={make_dataset_fn!r}"
        )
    tpu = _is_tpu_strategy(strategy)

    def dataset_fn(input_context):
        dataset = make_dataset_fn(input_context)
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(
                "`make_dataset_fn` must return a `tf.data.Dataset`. "
                f"Received: {dataset!r}"
            )
        if tpu:
            _check_static_batch(dataset)
        return dataset

    return strategy.distribute_datasets_from_function(dataset_fn, options=options)
