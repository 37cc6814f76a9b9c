"""AutoAugment: every sub-policy of every policy against torchvision's ops run with Pillow."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from keras_contrast.layers import AutoAugment
from keras_contrast.layers.auto_augment import POLICIES
from tests import harness

# torchvision's `AutoAugment._augmentation_space(10, size)`, written out as its
# float32 `linspace` values (computed here in float64 and rounded once).
def _bins(start, stop):
    return [float(np.float32(start + (stop - start) * k / 9)) for k in range(10)]


def _space(width):
    return {
        "shear_x": (_bins(0, 0.3), True), "shear_y": (_bins(0, 0.3), True),
        "translate_x": (_bins(0, float(np.float32(150 / 331 * width))), True),
        "translate_y": (_bins(0, float(np.float32(150 / 331 * width))), True),
        "rotate": (_bins(0, 30), True),
        "brightness": (_bins(0, 0.9), True), "color": (_bins(0, 0.9), True),
        "contrast": (_bins(0, 0.9), True), "sharpness": (_bins(0, 0.9), True),
        "posterize": ([8, 8, 7, 7, 6, 6, 5, 5, 4, 4], False),
        "solarize": (_bins(255, 0), False),
    }


def _inverse_affine(center, angle, translate, shear):
    """torchvision's `_get_inverse_affine_matrix` (scale 1), written out."""
    rot, sx, sy = math.radians(angle), math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d, -b, 0.0, -c, a, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty)
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty)
    m[2] += cx
    m[5] += cy
    return m


def _torchvision_op(img, name, magnitude):
    """torchvision's `_apply_op` on a PIL image (NEAREST, fill None)."""
    w, h = img.size
    if name == "shear_x":
        m = _inverse_affine([0, 0], 0.0, [0, 0], [math.degrees(math.atan(magnitude)), 0.0])
        return img.transform(img.size, Image.AFFINE, m, Image.NEAREST)
    if name == "shear_y":
        m = _inverse_affine([0, 0], 0.0, [0, 0], [0.0, math.degrees(math.atan(magnitude))])
        return img.transform(img.size, Image.AFFINE, m, Image.NEAREST)
    if name == "translate_x":
        m = _inverse_affine([w * 0.5, h * 0.5], 0.0, [int(magnitude), 0], [0.0, 0.0])
        return img.transform(img.size, Image.AFFINE, m, Image.NEAREST)
    if name == "translate_y":
        m = _inverse_affine([w * 0.5, h * 0.5], 0.0, [0, int(magnitude)], [0.0, 0.0])
        return img.transform(img.size, Image.AFFINE, m, Image.NEAREST)
    if name == "rotate":
        return img.rotate(magnitude, Image.NEAREST)
    if name == "brightness":
        return ImageEnhance.Brightness(img).enhance(1.0 + magnitude)
    if name == "color":
        return ImageEnhance.Color(img).enhance(1.0 + magnitude)
    if name == "contrast":
        return ImageEnhance.Contrast(img).enhance(1.0 + magnitude)
    if name == "sharpness":
        return ImageEnhance.Sharpness(img).enhance(1.0 + magnitude)
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
    raise AssertionError(name)


def _reference(image, sub_policy, apply, signs, centre=None, cutout=0, fill=128):
    img = Image.fromarray(image)
    space = _space(img.size[0])
    for (name, _, bin_index), applied, sign in zip(sub_policy, apply, signs):
        if not applied:
            continue
        magnitude = 0.0
        if bin_index is not None:
            table, signed = space[name]
            magnitude = float(table[bin_index])
            if signed and sign < 0:
                magnitude *= -1.0
        img = _torchvision_op(img, name, magnitude)
    out = np.array(img)
    if cutout:
        y, x = centre
        out[max(0, y - cutout // 2):min(out.shape[0], y + cutout // 2),
            max(0, x - cutout // 2):min(out.shape[1], x + cutout // 2)] = fill
    return out


def _every_sub_policy(policy, size, seed):
    """A transformation giving each of the 25 sub-policies to 4 images, one per
    sign pattern, both ops applied; random images with some of narrow range."""
    n = len(POLICIES[policy]) * 4
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, *size, 3)).astype("uint8")
    images[::3] = images[::3] // 3 + 60
    signs = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]] * len(POLICIES[policy]), "float32")
    t = {
        "sub_policies": np.repeat(np.arange(len(POLICIES[policy])), 4).astype("int32"),
        "apply": np.ones((n, 2), bool),
        "signs": signs,
    }
    return images, t


@pytest.mark.parametrize("policy", ["cifar10", "svhn", "imagenet"])
@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_every_sub_policy_equals_torchvision_ops_with_pillow(policy, jit_compile):
    size = (32, 32) if policy != "imagenet" else (40, 56)
    images, t = _every_sub_policy(policy, size, seed=len(policy))
    out = np.asarray(AutoAugment(policy, jit_compile=jit_compile).transform_images(images, t))
    failures = []
    for i, image in enumerate(images):
        sub = POLICIES[policy][t["sub_policies"][i]]
        expected = _reference(image, sub, t["apply"][i], t["signs"][i])
        if not np.array_equal(out[i].astype("uint8"), expected):
            failures.append((int(t["sub_policies"][i]), sub, t["signs"][i].tolist()))
    assert not failures, failures


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_ops_not_drawn_are_skipped_and_cutout_follows(jit_compile):
    images, t = _every_sub_policy("cifar10", (32, 32), seed=9)
    rng = np.random.default_rng(1)
    t["apply"] = rng.random((len(images), 2)) < 0.5
    t["cutout_centres"] = rng.integers(0, 32, (len(images), 2)).astype("int32")
    t["cutout_centres"][:4] = [[0, 0], [31, 31], [3, 28], [16, 16]]  # Clipped boxes.
    layer = AutoAugment("cifar10", cutout_size=16, cutout_fill=100, jit_compile=jit_compile)
    out = np.asarray(layer.transform_images(images, t)).astype("uint8")
    for i, image in enumerate(images):
        sub = POLICIES["cifar10"][t["sub_policies"][i]]
        expected = _reference(image, sub, t["apply"][i], t["signs"][i],
                              t["cutout_centres"][i], cutout=16, fill=100)
        np.testing.assert_array_equal(out[i], expected, err_msg=str(i))


def test_translations_follow_the_width_on_other_sizes():
    # torchvision's translate magnitude is 150/331 of `image_size[0]` (the width) for
    # both directions; a non-square image at every bin and sign.
    layer = AutoAugment("svhn")
    images, t = _every_sub_policy("svhn", (24, 45), seed=3)
    out = np.asarray(layer.transform_images(images, t)).astype("uint8")
    for i, image in enumerate(images):
        sub = POLICIES["svhn"][t["sub_policies"][i]]
        np.testing.assert_array_equal(out[i], _reference(image, sub, [1, 1], t["signs"][i]))


def test_sub_policy_and_probability_statistics():
    layer = AutoAugment("cifar10", seed=3)
    t = layer.get_random_transformation(np.zeros((20000, 4, 4, 3), "uint8"))
    sub = np.asarray(t["sub_policies"])
    counts = np.bincount(sub, minlength=25) / len(sub)
    np.testing.assert_allclose(counts, 1 / 25, atol=0.006)
    probabilities = np.array([[p for _, p, _ in s] for s in POLICIES["cifar10"]])
    apply = np.asarray(t["apply"])
    for j in range(25):
        rows = apply[sub == j]
        np.testing.assert_allclose(rows.mean(0), probabilities[j], atol=0.06)
    assert not apply[sub == 14][:, 1].any()  # ("invert", 0.0): never.
    assert abs(np.asarray(t["signs"]).mean()) < 0.03
    assert "cutout_centres" not in t
    c = np.asarray(AutoAugment(cutout_size=8, seed=1).get_random_transformation(
        np.zeros((5000, 6, 10, 3), "uint8"))["cutout_centres"])
    assert set(np.unique(c[:, 0])) == set(range(6)) and set(np.unique(c[:, 1])) == set(range(10))


def test_replay_value_range_and_training_false():
    images = np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3)).astype("uint8")
    layer = AutoAugment("imagenet", cutout_size=8, seed=5)
    t = layer.get_random_transformation(images)
    out = np.asarray(layer.transform_images(images, t))
    scaled = AutoAugment("imagenet", cutout_size=8, value_range=(0, 1))
    out01 = np.asarray(scaled.transform_images(images.astype("float32") / 255.0, t))
    np.testing.assert_allclose(out01 * 255.0, out, atol=1e-3)
    np.testing.assert_array_equal(layer(images, training=False), images)


def test_eager_tf_data_unbatched_and_model_agree():
    images = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 3)).astype("uint8")
    eager = np.asarray(AutoAugment(cutout_size=8, seed=7)(images))
    ds = tf.data.Dataset.from_tensors(images).map(AutoAugment(cutout_size=8, seed=7))
    np.testing.assert_array_equal(next(iter(ds)), eager)
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, AutoAugment(cutout_size=8, seed=7)(inputs))
    np.testing.assert_array_equal(model(images, training=True), eager)
    assert not np.array_equal(eager, images)
    single = next(iter(tf.data.Dataset.from_tensors(images[0]).map(AutoAugment(seed=2))))
    assert single.shape == (16, 16, 3)
    np.testing.assert_array_equal(single, AutoAugment(seed=2)(images[0]))


def test_config_and_keras_round_trip(tmp_path):
    layer = AutoAugment("svhn", cutout_size=4, cutout_fill=0, value_range=(0, 1),
                        jit_compile=False, seed=4)
    harness.assert_config_round_trip(layer)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, AutoAugment(seed=4)(inputs, training=False))
    images = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3)).astype("float32")
    harness.assert_keras_round_trip(model, images, tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"policy": "mnist"}, "policy"),
        ({"cutout_size": -1}, "cutout_size"),
        ({"cutout_size": 2.5}, "cutout_size"),
        ({"cutout_fill": 256}, "cutout_fill"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"jit_compile": 1}, "jit_compile"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoAugment(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="channels"):
        AutoAugment(seed=0)(np.zeros((2, 4, 4, 4), "uint8"))
    with pytest.raises(ValueError, match="rank"):
        AutoAugment(seed=0)(np.zeros((2, 2, 4, 4, 3), "uint8"))
