"""`build_pipeline`, `distribute` and `per_replica_batch_size`."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import data
from tests import harness


def _toy(n=20, size=4):
    """Images whose pixels all equal the example index, labels = index."""
    images = np.repeat(np.arange(n, dtype=np.uint8), size * size * 3).reshape(n, size, size, 3)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(n, dtype=np.int32)))


def _labels(dataset):
    return [y.numpy().tolist() for _, y in dataset]


def test_batches_without_views():
    # deterministic=True: the parallel batching may otherwise hand out batches out of order.
    out = data.build_pipeline(_toy(), batch_size=8, shuffle_buffer=0, deterministic=True)
    assert out.element_spec[0].shape == (8, 4, 4, 3)
    assert _labels(out) == [list(range(8)), list(range(8, 16))]  # Remainder dropped.
    kept = data.build_pipeline(_toy(), batch_size=8, shuffle_buffer=0, drop_remainder=False)
    assert sorted(len(b) for b in _labels(kept)) == [4, 8, 8]


def test_shuffle_repeat_and_epochs():
    # Epoch boundaries are only exact in element order with `deterministic=True`: otherwise
    # parallel maps may hand out an early element of epoch 2 before a late one of epoch 1.
    out = data.build_pipeline(
        _toy(), batch_size=5, shuffle_buffer=20, repeat=2, seed=1, deterministic=True
    )
    labels = _labels(out)
    assert len(labels) == 8
    first, second = sum(labels[:4], []), sum(labels[4:], [])
    assert sorted(first) == sorted(second) == list(range(20))
    assert first != list(range(20)) and first != second  # Re-shuffled each epoch.
    fast = data.build_pipeline(_toy(), batch_size=5, shuffle_buffer=20, repeat=2, seed=1)
    assert sorted(sum(_labels(fast), [])) == sorted(list(range(20)) * 2)
    forever = data.build_pipeline(_toy(), batch_size=5, repeat=True)
    assert len(list(forever.take(50))) == 50


@pytest.mark.parametrize("batched", [False, True])
def test_view_fn_applied(batched):
    def two_views(images):
        images = tf.cast(images, tf.float32)
        return tf.stack([images, -images], axis=-4)  # [..., 2, H, W, 3]

    out = data.build_pipeline(_toy(), batch_size=4, shuffle_buffer=0, view_fn=two_views,
                              view_fn_batched=batched)
    views, labels = next(iter(out))
    assert views.shape == (4, 2, 4, 4, 3) and views.dtype == tf.float32
    np.testing.assert_array_equal(views[:, 0, 0, 0, 0], labels.numpy())
    np.testing.assert_array_equal(views[:, 1, 0, 0, 0], -labels.numpy())


@pytest.mark.parametrize("batched", [False, True])
def test_keras_layer_as_view_fn(batched):
    layer = keras.layers.Rescaling(1.0 / 255)
    out = data.build_pipeline(_toy(), batch_size=4, shuffle_buffer=0, view_fn=layer,
                              view_fn_batched=batched)
    images, labels = next(iter(out))
    np.testing.assert_allclose(images[:, 0, 0, 0], labels.numpy() / 255, rtol=1e-6)


def _augmented(seed, layer_seed, deterministic=True):
    dataset, _ = data.cifar10_sample("validation")
    flip = keras.layers.RandomFlip("horizontal", seed=layer_seed)
    crop = keras.layers.RandomCrop(24, 24, seed=layer_seed)
    return data.build_pipeline(
        dataset.shard(10, 0).take(96), batch_size=32,  # Labels 0..9 mixed.
        shuffle_buffer=96, seed=seed,
        deterministic=deterministic, view_fn=lambda image: crop(flip(image)),
    )


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_deterministic_mode_gives_identical_batches():
    first, second = _batches(_augmented(7, 3)), _batches(_augmented(7, 3))
    assert len(first) == 3
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, x2)
    other = _batches(_augmented(8, 3))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(first, other))
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))
    options = _augmented(7, 3).options()
    assert options.deterministic is True
    assert _augmented(7, 3, deterministic=False).options().deterministic is False


def test_cache_in_memory_and_on_disk(tmp_path):
    calls = tf.Variable(0, dtype=tf.int64)

    def count(image, label):
        calls.assign_add(1)
        return image, label

    source = _toy().map(count)
    out = data.build_pipeline(source, batch_size=5, cache=True, repeat=3, shuffle_buffer=20,
                              seed=0)
    assert len(list(out)) == 12
    assert int(calls.numpy()) == 20  # Read once, served from the cache afterwards.
    prefix = str(tmp_path / "cache")
    # deterministic=True: without it tf.data may reorder batches under load.
    cached = data.build_pipeline(
        _toy(), batch_size=5, cache=prefix, shuffle_buffer=0, deterministic=True
    )
    uncached = data.build_pipeline(_toy(), batch_size=5, shuffle_buffer=0, deterministic=True)
    assert _labels(cached) == _labels(uncached)
    assert list(tmp_path.glob("cache*.index"))


def test_shard_by_input_context():
    shards = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(2, pipeline_id, num_replicas_in_sync=4)
        out = data.build_pipeline(_toy(), batch_size=8, shuffle_buffer=0,
                                  input_context=context, drop_remainder=False)
        assert out.element_spec[0].shape[0] is None
        shards.append(sum(_labels(out), []))
        assert max(len(b) for b in _labels(out)) == 2  # 8 global / 4 replicas.
    assert sorted(shards[0] + shards[1]) == list(range(20))
    assert not set(shards[0]) & set(shards[1])
    unsharded = data.build_pipeline(_toy(), batch_size=8, shuffle_buffer=0, shard=False,
                                    input_context=tf.distribute.InputContext(2, 1, 4))
    assert len(sum(_labels(unsharded), [])) == 20


def test_distribute_per_replica_batches_under_mirrored_strategy():
    strategy = harness.mirrored_strategy()
    contexts = []

    def make_dataset(input_context):
        contexts.append(input_context)
        dataset, _ = data.cifar10_sample("validation")
        return data.build_pipeline(dataset, batch_size=16, shuffle_buffer=0,
                                   view_fn=lambda x: tf.cast(x, tf.float32) / 255,
                                   input_context=input_context)

    distributed = data.distribute(strategy, make_dataset)
    images, labels = next(iter(distributed))
    assert contexts[0].num_replicas_in_sync == 2
    local = strategy.experimental_local_results(images)
    assert len(local) == 2 and all(t.shape == (8, 32, 32, 3) for t in local)
    assert all(t.shape == (8,) for t in strategy.experimental_local_results(labels))

    @tf.function
    def step(images, labels):
        return strategy.run(lambda x, y: tf.shape(x)[0] + 0 * tf.shape(y)[0],
                            args=(images, labels))

    sizes = strategy.experimental_local_results(step(images, labels))
    assert [int(s) for s in sizes] == [8, 8]


def test_per_replica_batch_size():
    assert data.per_replica_batch_size(64) == 64
    context = tf.distribute.InputContext(num_replicas_in_sync=4)
    assert data.per_replica_batch_size(64, context) == 16
    with pytest.raises(ValueError, match="divisible by the 4 replicas"):
        data.per_replica_batch_size(30, context)


def test_bad_arguments():
    ds = _toy()
    with pytest.raises(ValueError, match="`batch_size` must be an int > 0. Received: batch_size=0"):
        data.build_pipeline(ds, batch_size=0)
    with pytest.raises(ValueError, match="`dataset` must be a `tf.data.Dataset`"):
        data.build_pipeline([1, 2], batch_size=2)
    with pytest.raises(ValueError, match="`view_fn` must be None, a callable"):
        data.build_pipeline(ds, batch_size=2, view_fn="flip")
    with pytest.raises(ValueError, match="shuffle_buffer=-1"):
        data.build_pipeline(ds, batch_size=2, shuffle_buffer=-1)
    with pytest.raises(ValueError, match="repeat=0"):
        data.build_pipeline(ds, batch_size=2, repeat=0)
    with pytest.raises(ValueError, match="cache=''"):
        data.build_pipeline(ds, batch_size=2, cache="")
    with pytest.raises(ValueError, match="Received: seed=None"):
        data.build_pipeline(ds, batch_size=2, deterministic=True)
    with pytest.raises(ValueError, match="`input_context` must be None or"):
        data.build_pipeline(ds, batch_size=2, input_context=2)
    with pytest.raises(ValueError, match="`strategy` must be a"):
        data.distribute("mirrored", lambda ctx: ds)
    with pytest.raises(ValueError, match="must return a `tf.data.Dataset`"):
        data.distribute(tf.distribute.get_strategy(), lambda ctx: [1])


def test_tpu_static_batch_check():
    from keras_contrast.data import pipeline

    pipeline._check_static_batch(data.build_pipeline(_toy(), batch_size=4))
    with pytest.raises(ValueError, match="drop_remainder=True"):
        pipeline._check_static_batch(
            data.build_pipeline(_toy(), batch_size=4, drop_remainder=False)
        )
