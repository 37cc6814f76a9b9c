"""Benchmark-only baselines: CLSA's 14-op strong augmentation and torchvision's
AutoAugment, with Pillow.

`PillowStrongAugment`: same pool, magnitudes and policy as
`keras_contrast.layers.StrongAugment` (num_ops ops with replacement, each with
probability `rate`, magnitude uniform in 1..9), on one PIL image at a time, as
CLSA's data loader does. `PillowAutoAugment`: torchvision's `AutoAugment` ops on
PIL images. `batch` takes decoded PIL images and returns uint8 arrays.
"""

import math
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

    def batch(self, images, dtype="uint8"):
        """Augments decoded PIL images (the data loader's input) into `dtype` arrays
        (`np.asarray(img).astype(dtype)`: faster than `np.asarray(img, dtype)`)."""
        return np.stack([np.asarray(self(img)).astype(dtype, copy=False) for img in images])


def torchvision_op(img, name, magnitude):
    """torchvision's AutoAugment `_apply_op` on a PIL image (nearest, black fill)."""
    w, h = img.size
    if name == "shear_x":
        s = math.tan(math.radians(math.degrees(math.atan(magnitude))))
        return img.transform(img.size, Image.AFFINE, (1, s, 0, 0, 1, 0))
    if name == "shear_y":
        sy = math.radians(math.degrees(math.atan(magnitude)))
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, -(math.sin(-sy) / math.cos(sy)), 1, 0))
    if name == "translate_x":
        return img.transform(img.size, Image.AFFINE, (1, 0, -int(magnitude), 0, 1, 0))
    if name == "translate_y":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, -int(magnitude)))
    if name == "rotate":
        return img.rotate(magnitude)
    if name in ("brightness", "color", "contrast", "sharpness"):
        enhance = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
                   "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}
        return enhance[name](img).enhance(1.0 + magnitude)
    if name == "posterize":
        return ImageOps.posterize(img, int(magnitude))
    if name == "solarize":
        return ImageOps.solarize(img, magnitude)
    if name == "auto_contrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "invert":
        return ImageOps.invert(img)
    raise ValueError(f"Unknown op. Received: name={name}")


class PillowAutoAugment:
    """torchvision's `AutoAugment(policy)` on PIL images, as its data loaders run it."""

    def __init__(self, policy="imagenet", seed=0):
        from keras_contrast.layers.auto_augment import POLICIES, magnitude

        self.policies, self.magnitude = POLICIES[policy], magnitude
        self.rng = random.Random(seed)

    def __call__(self, img):
        signed = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate",
                  "brightness", "color", "contrast", "sharpness")
        for name, p, bin_index in self.rng.choice(self.policies):
            sign = -1.0 if self.rng.random() < 0.5 else 1.0
            if self.rng.random() > p:
                continue
            m = 0.0
            if name in ("translate_x", "translate_y"):
                m = bin_index * (150.0 / 331.0 * img.size[0]) / 9
            elif bin_index is not None:
                m = self.magnitude(name, bin_index)
            img = torchvision_op(img, name, sign * m if name in signed else m)
        return img

    def batch(self, images):
        return np.stack([np.asarray(self(img)) for img in images])
