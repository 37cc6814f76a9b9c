"""ColorJitter: pixels against Pillow (torchvision's PIL path), statistics, plumbing."""

import itertools
import platform

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from PIL import ImageEnhance

from keras_contrast import layers as L
from keras_contrast.layers import color_jitter
from keras_contrast.layers import ColorJitter
from tests import harness

H, W = 12, 13


def _images(n=6, seed=0):
    """Random uint8 images, plus edge cases in the first ones."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, H, W, 3)).astype("uint8")
    pure = np.array(list(itertools.product([0, 255], repeat=3)), "uint8")  # 8 corners.
    x[0, 0, :8] = pure
    x[0, 1, :] = np.arange(W)[:, None] * 20  # Grey pixels, 0..240.
    x[0, 2, 0] = 255
    x[0, 2, 1] = (255, 254, 0)  # Hue near the wrap-around.
    x[0, 2, 2] = (255, 0, 1)
    x[0, 2, 3] = (1, 0, 0)
    if n > 3:
        x[1] = 128  # A flat grey image.
        x[2] = x[2] // 4 + 100  # Low contrast, low saturation.
        x[3, ..., 2] = 0  # No blue channel.
    return x


# -------------------------------------------------- reference (Pillow / torchvision)


def _hue_shift(h):
    """torchvision's `np.array(h * 255).astype(np.uint8)`, written out: truncation
    toward zero, then modulo 256 (what the NumPy cast does on x86-64)."""
    return np.uint8(int(float(h) * 255) % 256)


def ref_adjust_hue(img, h):
    """torchvision `functional_pil.adjust_hue`."""
    hue, sat, val = img.convert("HSV").split()
    np_h = np.array(hue, dtype=np.uint8)
    np_h += _hue_shift(h)  # uint8: wraps around.
    return Image.merge("HSV", (Image.fromarray(np_h, "L"), sat, val)).convert("RGB")


def ref_color_jitter(image, factors, order, strengths=(0.4, 0.4, 0.4, 0.1)):
    """torchvision `ColorJitter.forward` on one PIL image with fixed draws; an op of
    strength 0 is skipped (torchvision's `None` factor)."""
    img = Image.fromarray(image, "RGB")
    b, c, s, h = (float(f) for f in factors)
    for op in order:
        if not strengths[op]:
            continue
        if op == 0:
            img = ImageEnhance.Brightness(img).enhance(b)
        elif op == 1:
            img = ImageEnhance.Contrast(img).enhance(c)
        elif op == 2:
            img = ImageEnhance.Color(img).enhance(s)
        else:
            img = ref_adjust_hue(img, h)
    return np.asarray(img)


def _transformation(factors, orders):
    factors = np.asarray(factors, "float32")
    return {
        "brightness_factor": factors[:, 0],
        "contrast_factor": factors[:, 1],
        "saturation_factor": factors[:, 2],
        "hue_factor": factors[:, 3],
        "order": np.asarray(orders, "int32"),
    }


def _assert_matches_reference(layer, images, t, strengths):
    out = np.asarray(layer.transform_images(images, t))
    assert out.dtype == np.float32
    factors = np.stack([t[f"{n}_factor"] for n in color_jitter.OP_NAMES], axis=1)
    for i, image in enumerate(images):
        expected = ref_color_jitter(image, factors[i], t["order"][i], strengths)
        np.testing.assert_array_equal(
            out[i], expected, err_msg=f"image {i}, factors {factors[i]}, order {t['order'][i]}"
        )
    return out


def test_reference_hue_shift_is_torchvision_cast_on_this_platform():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("float -> uint8 of a negative value is platform dependent")
    for h in (-0.5, -0.1, -0.0039, 0.0, 0.003, 0.1, 0.5, -0.37, 0.2345):
        assert np.array(h * 255).astype(np.uint8) == _hue_shift(h), h


# ------------------------------------------------------------------ exact pixels

ORDERS = [(0, 1, 2, 3), (3, 2, 1, 0), (2, 0, 3, 1), (1, 3, 0, 2), (3, 0, 1, 2), (0, 2, 1, 3)]
FACTORS = [
    (0.6, 0.6, 0.6, -0.1),
    (1.4, 1.4, 1.4, 0.1),
    (0.8125, 1.2, 0.73, 0.0337),
    (1.1, 0.65, 1.33, -0.0551),
    (0.0, 2.5, 0.0, 0.5),  # Extremes: black, strong extrapolation, grey, half turn.
    (1.0, 1.0, 1.0, 0.001),  # Identity blends; the hue round trip alone (shift 0).
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: "".join(map(str, o)))
def test_all_ops_in_each_order_match_pillow(order):
    images = _images(len(FACTORS))
    t = _transformation(FACTORS, [order] * len(FACTORS))
    out = _assert_matches_reference(ColorJitter(), images, t, (0.4, 0.4, 0.4, 0.1))
    assert not np.array_equal(out, images)


@pytest.mark.parametrize("op", range(4), ids=color_jitter.OP_NAMES)
def test_each_op_alone_matches_pillow(op):
    strengths = [0.0] * 4
    strengths[op] = 0.5 if op == 3 else 1.5
    layer = ColorJitter(*strengths)
    images = _images(len(FACTORS))
    t = _transformation(FACTORS, [ORDERS[k % len(ORDERS)] for k in range(len(FACTORS))])
    out = _assert_matches_reference(layer, images, t, strengths)
    if op == 3:
        # Shift 0 (hue factor 0.001): the lossy HSV round trip still runs.
        assert not np.array_equal(out[5], images[5])


def test_random_transformations_of_many_images_match_pillow():
    # The layer's own draws (per-image factors and orders, all 24 orders likely),
    # over strengths that make every op extrapolate.
    images = _images(96, seed=4)
    layer = ColorJitter(0.9, 0.9, 0.9, 0.5, seed=11)
    t = {k: np.asarray(v) for k, v in layer.get_random_transformation(images).items()}
    _assert_matches_reference(layer, images, t, (0.9, 0.9, 0.9, 0.5))


def test_layer_call_matches_pillow_on_its_transformation():
    # `layer(images)` = `transform_images(images, get_random_transformation(...))`.
    images = _images(8, seed=2)
    t = {k: np.asarray(v) for k, v in ColorJitter(seed=5).get_random_transformation(images).items()}
    out = np.asarray(ColorJitter(seed=5)(images))
    for i, image in enumerate(images):
        factors = [t[f"{n}_factor"][i] for n in color_jitter.OP_NAMES]
        np.testing.assert_array_equal(out[i], ref_color_jitter(image, factors, t["order"][i]))


def _all_colours():
    c = np.arange(1 << 24, dtype=np.uint32)
    rgb = np.stack([(c >> 16) & 255, (c >> 8) & 255, c & 255], axis=-1).astype("uint8")
    return rgb.reshape(4096, 4096, 3)


def test_hsv_conversions_match_pillow_on_all_colours():
    # The layer runs the conversions inside its XLA program; check them there.
    colours = _all_colours()
    to_hsv = tf.function(color_jitter.rgb_to_hsv, jit_compile=True)
    to_rgb = tf.function(color_jitter.hsv_to_rgb, jit_compile=True)
    expected = np.asarray(Image.fromarray(colours, "RGB").convert("HSV"))
    np.testing.assert_array_equal(np.asarray(to_hsv(colours)), expected)
    # Every uint8 triple read as HSV (not only those Pillow's RGB -> HSV produces).
    expected = np.asarray(Image.fromarray(colours, "HSV").convert("RGB"))
    np.testing.assert_array_equal(np.asarray(to_rgb(colours)), expected)


def test_hsv_conversions_without_xla_on_a_sample():
    colours = _all_colours()[::16, ::16]  # 65536 colours, every 16th of each row.
    np.testing.assert_array_equal(
        np.asarray(color_jitter.rgb_to_hsv(colours)),
        np.asarray(Image.fromarray(colours, "RGB").convert("HSV")),
    )
    np.testing.assert_array_equal(
        np.asarray(tf.function(color_jitter.hsv_to_rgb)(colours)),
        np.asarray(Image.fromarray(colours, "HSV").convert("RGB")),
    )


def test_hue_matches_pillow_for_every_shift():
    # All shifts int(h * 255) in -127..127, on 4096 random colours each.
    shifts = np.arange(-127, 128)
    hue = np.float32((np.abs(shifts) + 0.5) / 255 * np.sign(shifts))
    hue[shifts == 0] = 0.001
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (len(shifts), 64, 64, 3)).astype("uint8")
    factors = np.ones((len(shifts), 4), "float32")
    factors[:, 3] = hue
    t = _transformation(factors, [(3, 0, 1, 2)] * len(shifts))
    out = np.asarray(ColorJitter(0, 0, 0, 0.5).transform_images(images, t))
    for i, image in enumerate(images):
        assert int(float(hue[i]) * 255) == shifts[i]
        expected = np.asarray(ref_adjust_hue(Image.fromarray(image, "RGB"), hue[i]))
        np.testing.assert_array_equal(out[i], expected, err_msg=f"shift {shifts[i]}")


def test_float_inputs_and_value_range():
    images = _images(4, seed=6)
    t = _transformation(FACTORS[:4], ORDERS[:4])
    expected = np.asarray(ColorJitter().transform_images(images, t))
    # Integer-valued floats on 0-255: the same pixels.
    np.testing.assert_array_equal(
        ColorJitter().transform_images(images.astype("float32"), t), expected
    )
    # value_range (0, 1): scaled to 0-255 and back.
    out = ColorJitter(value_range=(0, 1)).transform_images(images.astype("float32") / 255, t)
    np.testing.assert_allclose(np.asarray(out) * 255, expected, atol=1e-3)
    # Non-integer floats (a bilinear crop's output) are rounded first, like a PIL image.
    noisy = images.astype("float32") + np.random.default_rng(0).uniform(-0.45, 0.45, images.shape)
    noisy = np.clip(noisy, -0.4, 255.4).astype("float32")
    np.testing.assert_array_equal(ColorJitter().transform_images(noisy, t), expected)


def test_xla_program_and_jit_compiled_caller_give_the_same_pixels():
    images = _images(6, seed=7)
    layer = ColorJitter(seed=1)
    t = layer.get_random_transformation(images)
    expected = np.asarray(layer.transform_images(images, t))
    compiled = tf.function(lambda x: layer.transform_images(x, t), jit_compile=True)
    np.testing.assert_array_equal(compiled(images), expected)
    # The whole call (draws included) compiles too; XLA's RNG differs from the
    # non-XLA one, so only the range is checked here.
    fresh = ColorJitter(seed=1)
    out = tf.function(lambda x: fresh(x), jit_compile=True)(images)
    assert out.shape == images.shape and 0 <= float(tf.reduce_min(out)) <= 255


def test_zero_strengths_and_training_false_are_identity():
    images = _images(3)
    out = ColorJitter(0, 0, 0, 0, seed=1)(images)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(ColorJitter(seed=1)(images, training=False), images)
    floats = images.astype("float32") + 0.25
    np.testing.assert_array_equal(ColorJitter(seed=1)(floats, training=False), floats)


# ------------------------------------------------------------------ statistics

DRAWS = 24000


def _draws(layer):
    t = layer.get_random_transformation(np.zeros((DRAWS, 2, 2, 3), "uint8"))
    return {k: np.asarray(v) for k, v in t.items()}


def test_factor_ranges():
    t = _draws(ColorJitter(0.4, 0.4, 0.4, 0.1, seed=0))
    for name in ("brightness", "contrast", "saturation"):
        f = t[f"{name}_factor"]
        assert f.shape == (DRAWS,)
        assert 0.6 <= f.min() < 0.601 and 1.399 < f.max() <= 1.4, name
        assert abs((f < 1).mean() - 0.5) < 0.02, name  # Contrast etc. reduced half the time.
    h = t["hue_factor"]
    assert -0.1 <= h.min() < -0.0999 and 0.0999 < h.max() <= 0.1
    # torchvision clips the lower bound at 0.
    t = _draws(ColorJitter(1.5, 2.0, 1.0, 0.5, seed=1))
    for name, hi in (("brightness", 2.5), ("contrast", 3.0), ("saturation", 2.0)):
        f = t[f"{name}_factor"]
        assert 0 <= f.min() < 0.01 and hi - 0.01 < f.max() <= hi, name
    assert -0.5 <= t["hue_factor"].min() < -0.499 and 0.499 < t["hue_factor"].max() <= 0.5


def test_factors_and_order_are_independent():
    # keras' RandomColorJitter seeded its sub-layers alike: brightness, contrast
    # and saturation factors had r = 1.
    t = _draws(ColorJitter(seed=2))
    columns = [t[f"{n}_factor"] for n in color_jitter.OP_NAMES]
    # The position of each op in the order (three of them determine the fourth).
    positions = list(np.argsort(t["order"], axis=1).T[:3])
    r = np.corrcoef(np.stack(columns + positions).astype("float64"))
    # Every factor against every other factor and every position; positions of
    # different ops are dependent by construction (a permutation).
    factor_rows = np.abs(r[:4]) - np.eye(4, len(r))
    assert factor_rows.max() < 0.1, r


def test_every_order_is_equally_likely():
    order = _draws(ColorJitter(seed=3))["order"]
    assert order.shape == (DRAWS, 4) and order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order, axis=1), np.tile(np.arange(4), (DRAWS, 1)))
    perms = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([perms[tuple(row)] for row in order], minlength=24)
    expected = DRAWS / 24  # 1000, std ~31.
    assert np.abs(counts - expected).max() < 0.15 * expected, counts


# ------------------------------------------------------------------- plumbing


def test_eager_tf_data_and_model_agree():
    images = _images(5, seed=8)
    eager = np.asarray(ColorJitter(seed=7)(images))
    assert not np.array_equal(eager, images)
    batched = tf.data.Dataset.from_tensors(images).map(ColorJitter(seed=7))
    np.testing.assert_array_equal(next(iter(batched)), eager)
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, ColorJitter(seed=7)(inputs))
    np.testing.assert_array_equal(model(images.astype("float32"), training=True), eager)
    layer = ColorJitter(seed=7)
    np.testing.assert_array_equal(tf.function(lambda x: layer(x))(images), eager)


def test_unbatched_tf_data():
    images = _images(3, seed=9)
    same = np.repeat(images[:1], 3, axis=0)
    layer = ColorJitter(seed=2)
    eager = [np.asarray(layer(image)) for image in same]
    out = list(tf.data.Dataset.from_tensor_slices(same).map(ColorJitter(seed=2)))
    for a, b in zip(eager, out):
        assert b.shape == (H, W, 3)
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(out[0], out[1])  # Each element draws anew.
    # A single image is jittered as a batch of one.
    np.testing.assert_array_equal(
        ColorJitter(seed=4)(images[0]), ColorJitter(seed=4)(images[:1])[0]
    )


def test_config_and_keras_round_trip(tmp_path):
    layer = ColorJitter(0.3, 0.2, 0.1, 0.05, value_range=(0, 1), seed=4)
    clone = harness.assert_config_round_trip(layer)
    images = _images(3).astype("float32") / 255
    fresh = ColorJitter(0.3, 0.2, 0.1, 0.05, (0, 1), 4)
    np.testing.assert_array_equal(clone(images), fresh(images))
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, ColorJitter(seed=4)(inputs, training=False))
    harness.assert_keras_round_trip(model, _images(2).astype("float32"), tmp_path)


def test_weak_pipeline_uses_color_jitter():
    pipeline = L.weak_pipeline(8, value_range=(0, 1), seed=0)
    apply = [x for x in pipeline.layers if isinstance(x, L.RandomApply)]
    assert len(apply) == 1 and apply[0].rate == 0.8
    jitter = apply[0].layer
    assert isinstance(jitter, ColorJitter)
    assert (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue) == (
        0.4, 0.4, 0.4, 0.1
    )
    assert jitter.value_range == (0, 1)
    out = pipeline(_images(4, seed=1).astype("float32") / 255)
    assert out.shape == (4, 8, 8, 3)
    assert 0 <= float(tf.reduce_min(out)) and float(tf.reduce_max(out)) <= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"brightness": -0.1}, r"`brightness` .* Received: brightness=-0.1"),
        ({"contrast": float("nan")}, r"`contrast` .* Received: contrast=nan"),
        ({"saturation": float("inf")}, r"`saturation` .* Received: saturation=inf"),
        ({"brightness": "0.4"}, r"`brightness` .* Received: brightness=0.4"),
        ({"contrast": True}, r"`contrast` .* Received: contrast=True"),
        ({"hue": 0.6}, r"`hue` must be a number in \[0, 0.5\]. Received: hue=0.6"),
        ({"hue": -0.1}, r"Received: hue=-0.1"),
        ({"value_range": (1, 0)}, r"`value_range` .* Received: value_range=\(1, 0\)"),
        ({"value_range": (0, float("inf"))}, r"Received: value_range=\(0, inf\)"),
        ({"value_range": (0, float("nan"))}, r"Received: value_range=\(0, nan\)"),
        ({"value_range": (0, 1, 2)}, r"Received: value_range=\(0, 1, 2\)"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ColorJitter(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="rank"):
        ColorJitter(seed=0)(np.zeros((2, 2, 4, 4, 3), "uint8"))
    with pytest.raises(ValueError, match=r"3 channels .* images.shape=\(2, 4, 4, 1\)"):
        ColorJitter(seed=0)(np.zeros((2, 4, 4, 1), "uint8"))


def test_empty_batches():
    layer = ColorJitter(0.4, 0.4, 0.4, 0.1, seed=0)
    empty = np.zeros((0, 8, 8, 3), "uint8")
    assert layer(empty).shape == (0, 8, 8, 3)  # batch size known when traced
    unknown_batch = tf.function(layer, input_signature=[tf.TensorSpec((None, 8, 8, 3), tf.uint8)])
    assert unknown_batch(empty).shape == (0, 8, 8, 3)  # batch size known when run
    assert unknown_batch(np.zeros((2, 8, 8, 3), "uint8")).shape == (2, 8, 8, 3)


def test_unknown_height_and_width_in_tf_data_match_pillow():
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, size + (3,)).astype("uint8") for size in ((6, 9), (11, 4))]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(images), output_signature=tf.TensorSpec((None, None, 3), tf.uint8)
    ).batch(1)
    layer = ColorJitter(0.4, 0.4, 0.4, 0.1)
    t = _transformation([[1.3, 0.7, 1.2, -0.05]], [[3, 1, 0, 2]])
    for image, out in zip(images, dataset.map(lambda x: layer.transform_images(x, t))):
        expected = ref_color_jitter(image, [1.3, 0.7, 1.2, -0.05], [3, 1, 0, 2])
        np.testing.assert_array_equal(np.asarray(out)[0], expected)
