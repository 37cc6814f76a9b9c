"""`derive_seeds`: independent integer seeds for the random layers built from one seed."""

import numbers

import numpy as np

# Derived seeds lie in [0, SEED_BOUND): non-negative and below 2**31 - 1, so that they fit
# any integer seed argument (Keras `SeedGenerator`, `tf.random`, `tf.data`, NumPy).
SEED_BOUND = 2**31 - 1


def derive_seeds(seed, count):
    """Derives `count` independent integer seeds from one seed.

    Seeding several random layers with `seed, seed + 1, ...` makes objects built from
    neighbouring seeds share generators: layer `i + 1` of an object seeded `s` and layer
    `i` of one seeded `s + 1` draw the same random numbers, so, e.g., two views built with
    seeds `s` and `s + 1` are correlated. `derive_seeds` instead spawns `count` children
    of `numpy.random.SeedSequence(seed)` and draws one integer from each: the result is
    deterministic for a given `seed`, the seeds are statistically independent of each
    other and of those derived from any other `seed`, and the first `m` seeds of
    `derive_seeds(seed, n)` are `derive_seeds(seed, m)` (`m <= n`), so adding a random
    layer at the end keeps the seeds of the others.

    Args:
        seed: `None` (unseeded) or an int >= 0.
        count: how many seeds to derive, an int >= 0.

    Returns:
        A list of `count` Python ints in `[0, 2**31 - 1)`, or `[None] * count` when `seed`
        is `None` (each consumer then draws its own nondeterministic seed).

    Example:

    ```python
    crop_seed, flip_seed = derive_seeds(42, 2)
    crop = keras_contrast.layers.RandomResizedCrop(24, 24, seed=crop_seed)
    flip = keras.layers.RandomFlip("horizontal", seed=flip_seed)
    derive_seeds(None, 2)  # [None, None]
    ```
    """
    if seed is not None and (
        not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0
    ):
        raise ValueError(f"`seed` must be None or an int >= 0. Received: seed={seed!r}")
    if not isinstance(count, numbers.Integral) or isinstance(count, bool) or count < 0:
        raise ValueError(f"`count` must be an int >= 0. Received: count={count!r}")
    if seed is None:
        return [None] * int(count)
    children = np.random.SeedSequence(int(seed)).spawn(int(count))
    return [int(child.generate_state(1, np.uint64)[0] % SEED_BOUND) for child in children]
