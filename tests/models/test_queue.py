import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models.queue import KeyQueue
from tests import harness


def _keys(rng, n, dim):
    x = rng.normal(size=(n, dim)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_initial_keys_are_unit_vectors_and_pointer_zero():
    queue = KeyQueue(size=16, dim=4, seed=0)
    np.testing.assert_allclose(np.linalg.norm(queue().numpy(), axis=1), 1.0, atol=1e-6)
    assert int(queue.pointer.numpy()) == 0
    assert not queue.trainable_weights and len(queue.non_trainable_weights) == 2


def test_fifo_order_and_wrap_around():
    rng = np.random.default_rng(0)
    queue = KeyQueue(size=6, dim=3, seed=0)
    expected = queue().numpy().copy()
    pointer = 0
    for _ in range(5):  # 10 keys into 6 slots: wraps around once.
        batch = _keys(rng, 2, 3)
        queue.enqueue(batch)
        for row in batch:  # oldest slot first
            expected[pointer] = row
            pointer = (pointer + 1) % 6
        np.testing.assert_array_equal(queue().numpy(), expected)
        assert int(queue.pointer.numpy()) == pointer
    # After the wrap the newest batch sits in slots 2-3, slots 4-5 hold the third batch.
    assert pointer == 4


@pytest.mark.parametrize("batches", [[4, 4, 2, 4, 4, 2], [5, 3, 7], [6, 0, 6]])
def test_batches_that_do_not_divide_the_size_wrap_around(batches):
    # 0.1.0 failed one epoch later ("indices[2] = 16 is not in [0, 16)") on 10 examples in
    # batches of 4 (a short last batch of 2) with a queue of 16.
    rng = np.random.default_rng(1)
    queue = KeyQueue(size=16, dim=3, seed=0, with_labels=True)
    expected, expected_labels = queue().numpy().copy(), np.full(16, -1)
    enqueue = tf.function(queue.enqueue)  # batch sizes vary: a dynamic batch dimension
    pointer = 0
    for n in batches:
        batch, labels = _keys(rng, n, 3), rng.integers(0, 5, n)
        enqueue(tf.constant(batch), tf.constant(labels))
        for row, label in zip(batch, labels):
            expected[pointer], expected_labels[pointer] = row, label
            pointer = (pointer + 1) % 16
        np.testing.assert_array_equal(queue().numpy(), expected)
        np.testing.assert_array_equal(queue.labels.numpy(), expected_labels)
        assert int(queue.pointer.numpy()) == pointer


def test_a_batch_larger_than_the_queue_is_an_error():
    queue = KeyQueue(size=4, dim=3)
    with pytest.raises(ValueError, match="at most the queue size. Received: size=4, global batch=5"):
        queue.enqueue(tf.zeros([5, 3]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="at most the queue size"):
        tf.function(queue.enqueue, input_signature=[tf.TensorSpec([None, 3])])(tf.zeros([6, 3]))


def test_enqueue_inside_tf_function():
    queue = KeyQueue(size=4, dim=2, seed=0)
    keys = np.eye(2, dtype="float32")
    tf.function(queue.enqueue)(keys)
    np.testing.assert_array_equal(queue().numpy()[:2], keys)
    assert int(queue.pointer.numpy()) == 2


def test_global_enqueue_under_mirrored_strategy():
    strategy = harness.mirrored_strategy()
    rng = np.random.default_rng(1)
    per_replica = [_keys(rng, 2, 3), _keys(rng, 2, 3)]
    with strategy.scope():
        queue = KeyQueue(size=8, dim=3, seed=0)
    initial = queue().numpy()
    values = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(per_replica[ctx.replica_id_in_sync_group])
    )

    @tf.function
    def step(keys):
        strategy.run(queue.enqueue, args=(keys,))

    step(values)
    expected = initial.copy()
    expected[:4] = np.concatenate(per_replica)  # replica order
    for component in queue.queue.value.values:  # every replica holds the global queue
        np.testing.assert_array_equal(component.numpy(), expected)
    for component in queue.pointer.value.values:
        assert int(component.numpy()) == 4


def test_checkpoint_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    queue = KeyQueue(size=4, dim=2, seed=0)
    queue.enqueue(_keys(rng, 2, 2))
    path = tf.train.Checkpoint(queue=queue).save(str(tmp_path / "ckpt"))
    restored = KeyQueue(size=4, dim=2, seed=5)
    assert not np.allclose(restored().numpy(), queue().numpy())
    tf.train.Checkpoint(queue=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(restored().numpy(), queue().numpy())
    assert int(restored.pointer.numpy()) == 2


def test_config_round_trip():
    harness.assert_config_round_trip(KeyQueue(size=8, dim=4, seed=3))


def test_bad_inputs():
    with pytest.raises(ValueError, match="size=0"):
        KeyQueue(size=0, dim=4)
    with pytest.raises(ValueError, match="dim=2.0"):
        KeyQueue(size=4, dim=2.0)
    queue = KeyQueue(size=6, dim=2)
    with pytest.raises(ValueError, match="size=6, global batch=7"):
        queue.enqueue(np.ones((7, 2), "float32"))
    with pytest.raises(ValueError, match="keys.shape"):
        queue.enqueue(np.ones((2, 3), "float32"))


def test_labelled_queue_is_fifo_for_keys_and_labels():
    queue = KeyQueue(size=6, dim=2, seed=0, with_labels=True)
    np.testing.assert_array_equal(queue.labels.numpy(), [-1] * 6)
    for step in range(4):
        keys = np.full((2, 2), step, "float32")
        queue.enqueue(keys, labels=np.array([10 * step, 10 * step + 1]))
    # 4 batches of 2 into 6 slots: batch 3 overwrote batch 0 in rows 0-1.
    np.testing.assert_array_equal(queue.labels.numpy(), [30, 31, 10, 11, 20, 21])
    np.testing.assert_array_equal(queue().numpy()[:, 0], [3, 3, 1, 1, 2, 2])
    assert int(queue.pointer.numpy()) == 2


def test_labelled_queue_requires_labels_and_round_trips():
    queue = KeyQueue(size=4, dim=2, with_labels=True)
    with pytest.raises(ValueError, match="with_labels=True"):
        queue.enqueue(np.ones((2, 2), "float32"))
    with pytest.raises(ValueError, match="with_labels=False"):
        KeyQueue(size=4, dim=2).enqueue(np.ones((2, 2), "float32"), labels=[0, 1])
    assert KeyQueue.from_config(queue.get_config()).with_labels


def test_labelled_queue_gathers_labels_across_replicas():
    strategy = harness.mirrored_strategy()
    with strategy.scope():
        queue = KeyQueue(size=8, dim=2, with_labels=True)

    @tf.function
    def step(keys, labels):
        strategy.run(lambda k, l: queue.enqueue(k, labels=l), args=(keys, labels))

    keys = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.fill([2, 2], float(ctx.replica_id_in_sync_group))
    )
    labels = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([0, 1]) + 10 * ctx.replica_id_in_sync_group
    )
    step(keys, labels)
    for component in queue.labels.value.values:  # every replica holds the global batch
        np.testing.assert_array_equal(component.numpy()[:4], [0, 1, 10, 11])
