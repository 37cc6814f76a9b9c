"""Session set-up shared by every test.

TensorFlow must be told how many logical CPU devices to expose before its runtime starts, so
this happens at import time, before any test module imports TensorFlow ops. Two logical CPUs
let `MirroredStrategy` tests run on a CPU-only machine.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from tests import harness  # noqa: E402

harness.configure_logical_cpus(harness.NUM_LOGICAL_CPUS)


import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded_initializers():
    """Seed Python, NumPy, TensorFlow and Keras before every test.

    Unseeded weight initialisers made results depend on test order and on luck: with a
    12-unit ReLU layer, a random draw could zero a whole hidden row. Each test now starts from
    the same global seed, so a failure reproduces with `pytest path::test` alone.
    """
    keras.utils.set_random_seed(int(os.environ.get("KERAS_CONTRAST_TEST_SEED", "1337")))
    yield
