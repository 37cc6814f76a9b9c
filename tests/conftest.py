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
