import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import distribute
from tests import harness


def test_gather_outside_a_strategy_is_identity():
    x = tf.constant([[1.0], [2.0]])
    (gathered,), offset = distribute.gather_from_replicas(x)
    assert gathered is x or np.array_equal(gathered.numpy(), x.numpy())
    assert int(offset) == 0


def test_gather_needs_a_tensor():
    with pytest.raises(ValueError, match="at least one tensor"):
        distribute.gather_from_replicas()


def test_make_strategy_names():
    assert distribute.make_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="strategy='gpu'"):
        distribute.make_strategy("gpu")


def test_gather_offsets_under_mirrored_strategy():
    strategy = harness.mirrored_strategy()
    data = tf.data.Dataset.from_tensor_slices(tf.range(6, dtype=tf.float32)[:, None]).batch(6)
    batch = next(iter(strategy.experimental_distribute_dataset(data)))

    @tf.function
    def step(x):
        def fn(x):
            (gathered,), offset = distribute.gather_from_replicas(x)
            return gathered, offset

        return strategy.run(fn, args=(x,))

    gathered, offsets = step(batch)
    for value in strategy.experimental_local_results(gathered):
        np.testing.assert_array_equal(value.numpy()[:, 0], np.arange(6))
    assert [int(o) for o in strategy.experimental_local_results(offsets)] == [0, 3]
