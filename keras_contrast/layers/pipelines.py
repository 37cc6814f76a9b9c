"""View pipelines of the papers: SimCLR/MoCo-v2 weak view and CLSA strong view."""

import keras

from keras_contrast.layers.color_jitter import ColorJitter
from keras_contrast.layers.random_apply import RandomApply
from keras_contrast.layers.random_gaussian_blur import PerImageGaussianBlur
from keras_contrast.layers.random_resized_crop import RandomResizedCrop
from keras_contrast.layers.strong_augment import StrongAugment
from keras_contrast.seeds import derive_seeds

# CLSA multi-crop (ImageNet scale): strong-crop sizes and their area scales.
CLSA_CROPS = (
    (224, (0.2, 1.0)),
    (192, (0.172, 0.86)),
    (160, (0.143, 0.715)),
    (128, (0.114, 0.571)),
    (96, (0.086, 0.429)),
)

# Seeds derived per pipeline: one per random layer of the weak view (crop, color jitter,
# its RandomApply, grayscale, blur, flip; the blur's seed is reserved when `blur=False`, so
# the flip keeps its seed), plus one for the strong view's StrongAugment.
_WEAK_SEEDS = 6


def weak_pipeline(size, scale=(0.2, 1.0), value_range=(0, 255), blur=True, seed=None):
    """MoCo-v2 / SimCLR weak view as a `keras.Sequential`.

    RandomResizedCrop(`size`, `scale`), color jitter (0.4, 0.4, 0.4, 0.1)
    with p=0.8, grayscale p=0.2, Gaussian blur sigma in [0.1, 2] p=0.5,
    horizontal flip. The color jitter is `ColorJitter`, torchvision's
    `ColorJitter` on PIL images: per image, multiplicative brightness,
    contrast and saturation factors in [0.6, 1.4], a hue shift in
    [-0.1, 0.1], drawn independently, applied in a random order. It rounds
    the crop's (bilinear, non-integer) output to 8-bit values first, as
    torchvision's crop of a PIL image does; images it skips (p=0.2) keep
    their unrounded values. Output: float, in `value_range`.

    Args:
        size: output side (int).
        scale: RandomResizedCrop area scale. Defaults to `(0.2, 1.0)`.
        value_range: input/output value range. Defaults to `(0, 255)`.
        blur: include the blur (SimCLR drops it on CIFAR). Defaults to True.
        seed: `None` or an int >= 0; each random layer gets an independent seed
            derived from `seed` (`keras_contrast.seeds.derive_seeds`). Defaults to None.

    Returns:
        A `keras.Sequential` of the layers above.
    """
    seeds = derive_seeds(seed, _WEAK_SEEDS)
    layers = [
        RandomResizedCrop(size, size, scale=scale, seed=seeds[0]),
        RandomApply(
            ColorJitter(0.4, 0.4, 0.4, 0.1, value_range=value_range, seed=seeds[1]),
            rate=0.8,
            seed=seeds[2],
        ),
        keras.layers.RandomGrayscale(factor=0.2, seed=seeds[3]),
    ]
    if blur:
        layers.append(PerImageGaussianBlur((0.1, 2.0), rate=0.5, seed=seeds[4]))
    layers.append(keras.layers.RandomFlip("horizontal", seed=seeds[5]))
    return keras.Sequential(layers)


def clsa_strong_pipeline(
    size, scale=(0.2, 1.0), value_range=(0, 255), blur=True, seed=None, **strong_kwargs
):
    """CLSA's strong view: the weak view followed by `StrongAugment`.

    `strong_kwargs` go to `StrongAugment` (e.g. `num_ops`, `rate`). For the
    multi-crop, build one per entry of `CLSA_CROPS`. Each random layer gets an
    independent seed derived from `seed` (`keras_contrast.seeds.derive_seeds`); the weak
    part is seeded as `weak_pipeline(..., seed=seed)`.
    """
    pipeline = weak_pipeline(size, scale, value_range, blur, seed)
    strong_seed = derive_seeds(seed, _WEAK_SEEDS + 1)[_WEAK_SEEDS]
    pipeline.add(StrongAugment(value_range=value_range, seed=strong_seed, **strong_kwargs))
    return pipeline
