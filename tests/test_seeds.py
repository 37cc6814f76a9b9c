"""derive_seeds: determinism, independence of derived seeds, None passthrough, validation."""

import numpy as np
import pytest

import keras_contrast.seeds
from keras_contrast.seeds import derive_seeds

BOUND = 2**31 - 1


def test_importable_as_keras_contrast_seeds():
    assert keras_contrast.seeds.derive_seeds is derive_seeds


def test_deterministic_ints_in_range():
    first = derive_seeds(7, 5)
    assert first == derive_seeds(7, 5)
    assert len(first) == 5
    assert all(type(s) is int and 0 <= s < BOUND for s in first)
    # NumPy integers are seeds too, and give the same seeds as the Python int.
    assert derive_seeds(np.int64(7), 5) == first


def test_different_seeds_differ():
    assert derive_seeds(0, 5) != derive_seeds(1, 5)
    assert derive_seeds(0, 1) != derive_seeds(1, 1)


def test_neighbouring_seeds_share_no_derived_seed():
    # The bug derive_seeds replaces: with `seed + i`, the layer i + 1 of seed s and the
    # layer i of seed s + 1 got the same seed.
    for seed in range(200):
        assert not set(derive_seeds(seed, 7)) & set(derive_seeds(seed + 1, 7)), seed
    everything = [s for seed in range(200) for s in derive_seeds(seed, 7)]
    assert len(set(everything)) == len(everything)


def test_spawned_seeds_distinct_and_spread():
    seeds = derive_seeds(3, 1000)
    assert len(set(seeds)) == 1000
    fractions = np.asarray(seeds) / BOUND
    assert fractions.min() >= 0 and fractions.max() < 1
    # Uniform on [0, 1): mean 0.5 (std of the mean 0.009), a quarter below 0.25.
    assert abs(fractions.mean() - 0.5) < 0.05
    assert abs((fractions < 0.25).mean() - 0.25) < 0.05


def test_prefix_stable():
    assert derive_seeds(11, 7)[:6] == derive_seeds(11, 6)
    assert derive_seeds(11, 0) == []


def test_none_passthrough():
    assert derive_seeds(None, 3) == [None, None, None]
    assert derive_seeds(None, 0) == []


@pytest.mark.parametrize("seed", [-1, True, 1.5, "1", [1]])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match=r"`seed` must be None or an int >= 0\. Received: seed="):
        derive_seeds(seed, 2)


@pytest.mark.parametrize("count", [-1, True, 2.0, None])
def test_bad_count(count):
    with pytest.raises(ValueError, match=r"`count` must be an int >= 0\. Received: count="):
        derive_seeds(0, count)
