"""Shared test harness: config and `.keras` round trips, and a 2-CPU `MirroredStrategy`.

Use it from any test module:

```python
from tests import harness

harness.assert_config_round_trip(layer)
harness.assert_keras_round_trip(model, inputs, tmp_path)
strategy = harness.mirrored_strategy()
```
"""

import functools
import inspect

import keras
import numpy as np
import tensorflow as tf

NUM_LOGICAL_CPUS = 2


def configure_logical_cpus(count):
    """Splits the physical CPU into `count` logical devices (once, before TF starts)."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        # The runtime is already initialised (e.g. a test imported in a subprocess); the
        # existing configuration stays, and `mirrored_strategy` checks the device count.
        pass


@functools.lru_cache(maxsize=None)
def mirrored_strategy(num_replicas=NUM_LOGICAL_CPUS):
    """A `MirroredStrategy` over `num_replicas` logical CPU devices.

    One instance per process and replica count: separate `MirroredStrategy` objects reuse
    collective instance keys, and TensorFlow then mixes up their all-gathers.
    """
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < num_replicas:
        raise RuntimeError(
            f"Need {num_replicas} logical CPUs for MirroredStrategy, found {devices}. "
            "tests/conftest.py configures them before TensorFlow starts."
        )
    return tf.distribute.MirroredStrategy(devices[:num_replicas])


def init_parameters(cls):
    """Names of the `__init__` parameters of `cls`, excluding `self` and `**kwargs`."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [
        p.name
        for p in params
        if p.name != "self"
        and p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    ]


def assert_config_round_trip(obj, skip=()):
    """Every `__init__` argument is in `get_config()`, and `from_config` reproduces it.

    Args:
        obj: a layer, loss, model or optimizer instance.
        skip: `__init__` parameters that are legitimately not part of the config (e.g. a
            nested model serialised separately); name them explicitly.
    """
    config = obj.get_config()
    missing = [p for p in init_parameters(type(obj)) if p not in config and p not in skip]
    assert not missing, f"{type(obj).__name__}.get_config() lacks {missing}"
    clone = type(obj).from_config(config)
    assert _normalise(clone.get_config()) == _normalise(config)
    # The registered name round-trips through Keras' generic (de)serialisation too.
    serialized = keras.saving.serialize_keras_object(obj)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(obj)
    return clone


def _normalise(config):
    if isinstance(config, dict):
        return {k: _normalise(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [_normalise(v) for v in config]
    return config


def assert_keras_round_trip(model, inputs, tmp_path, atol=1e-6, call_kwargs=None):
    """Saves `model` to `.keras`, loads it back and checks equal outputs on `inputs`."""
    call_kwargs = call_kwargs or {}
    path = str(tmp_path / "model.keras")
    expected = model(inputs, **call_kwargs)
    model.save(path)
    restored = keras.saving.load_model(path)
    actual = restored(inputs, **call_kwargs)
    tf.nest.map_structure(
        lambda a, b: np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), atol=atol, rtol=0
        ),
        expected,
        actual,
    )
    return restored
