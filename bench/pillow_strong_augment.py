"""Benchmark-only baseline: the CLSA 14-op strong augmentation with Pillow.

Same pool, magnitudes and policy as `keras_contrast.layers.StrongAugment`
(num_ops ops with replacement, each with probability `rate`, magnitude
uniform in 1..9), on one uint8 image at a time, as CLSA's data loader does.
"""

import random

import numpy as np
from PIL import Image, ImageEnhance, ImageOps


def _signed(value, rng):
    return -value if rng.random() < 0.5 else value


def apply_op(img, name, v, rng):
    f = 0.09 * v + 0.05
    if name == "auto_contrast":
        return ImageOps.autocontrast(img)
    if name == "brightness":
        return ImageEnhance.Brightness(img).enhance(f)
    if name == "color":
        return ImageEnhance.Color(img).enhance(f)
    if name == "contrast":
        return ImageEnhance.Contrast(img).enhance(f)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "identity":
        return img
    if name == "posterize":
        return ImageOps.posterize(img, int(0.4 * v) + 4)
    if name == "rotate":
        return img.rotate(_signed(3 * v, rng))
    if name == "sharpness":
        return ImageEnhance.Sharpness(img).enhance(f)
    if name == "shear_x":
        return img.transform(img.size, Image.AFFINE, (1, _signed(0.03 * v, rng), 0, 0, 1, 0))
    if name == "shear_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, _signed(0.03 * v, rng), 1, 0))
    if name == "solarize":
        return ImageOps.solarize(img, 256 - int(25.6 * v))
    if name == "translate_x":
        dx = int(_signed(0.03 * v, rng) * img.size[0])
        return img.transform(img.size, Image.AFFINE, (1, 0, dx, 0, 1, 0))
    if name == "translate_y":
        dy = int(_signed(0.03 * v, rng) * img.size[1])
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, dy))
    raise ValueError(f"Unknown op. Received: name={name}")


OPS = (
    "auto_contrast", "brightness", "color", "contrast", "equalize", "identity",
    "posterize", "rotate", "sharpness", "shear_x", "shear_y", "solarize",
    "translate_x", "translate_y",
)


class PillowStrongAugment:
    def __init__(self, num_ops=5, rate=0.5, seed=0):
        self.num_ops, self.rate = num_ops, rate
        self.rng = random.Random(seed)

    def __call__(self, img):
        for name in self.rng.choices(OPS, k=self.num_ops):
            v = self.rng.randint(1, 9)
            if self.rng.random() < self.rate:
                img = apply_op(img, name, v, self.rng)
        return img

    def batch(self, images):
        return np.stack([np.asarray(self(Image.fromarray(x))) for x in images])
