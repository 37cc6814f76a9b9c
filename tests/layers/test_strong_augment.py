"""StrongAugment: each op against a plain NumPy loop reference, statistics, plumbing."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.layers import StrongAugment
from keras_contrast.layers.strong_augment import OP_NAMES
from tests import harness

H, W = 9, 11


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, H, W, 3)).astype("uint8")
    if n > 1:
        x[1] = x[1] // 3 + 50  # Narrow range: AutoContrast/Equalize act.
    return x


# ------------------------------------------------------------- NumPy reference


def _gray(p):
    r, g, b = int(p[0]), int(p[1]), int(p[2])
    return (r * 19595 + g * 38470 + b * 7471 + 32768) >> 16


def _blend_px(d, x, f):
    v = np.float32(d) + np.float32(f) * (np.float32(x) - np.float32(d))
    return int(min(max(v, 0), 255))


def ref_op(img, op, v, sign):
    h, w, c = img.shape
    out = img.copy()
    f = 0.09 * v + 0.05
    if op == "identity":
        return out
    if op == "auto_contrast":
        for k in range(c):
            lo, hi = int(img[..., k].min()), int(img[..., k].max())
            for y in range(h):
                for x in range(w):
                    if hi > lo:
                        out[y, x, k] = (int(img[y, x, k]) - lo) * 255 // (hi - lo)
        return out
    if op == "equalize":
        for k in range(c):
            hist = [0] * 256
            for y in range(h):
                for x in range(w):
                    hist[img[y, x, k]] += 1
            nz = [q for q in hist if q]
            step = (sum(nz) - nz[-1]) // 255
            lut = list(range(256))
            if step:
                n = step // 2
                for i in range(256):
                    lut[i] = min(255, n // step)
                    n += hist[i]
            for y in range(h):
                for x in range(w):
                    out[y, x, k] = lut[img[y, x, k]]
        return out
    if op in ("brightness", "color", "contrast", "sharpness"):
        total = sum(_gray(img[y, x]) for y in range(h) for x in range(w))
        mean = int(total / (h * w) + 0.5)
        for y in range(h):
            for x in range(w):
                for k in range(c):
                    if op == "brightness":
                        d = 0
                    elif op == "color":
                        d = _gray(img[y, x])
                    elif op == "contrast":
                        d = mean
                    elif 0 < y < h - 1 and 0 < x < w - 1:
                        s = sum(
                            int(img[y + dy, x + dx, k]) * (5 if dy == dx == 0 else 1)
                            for dy in (-1, 0, 1)
                            for dx in (-1, 0, 1)
                        )
                        d = (s + 6) // 13
                    else:
                        d = int(img[y, x, k])
                    out[y, x, k] = _blend_px(d, img[y, x, k], f)
        return out
    if op == "posterize":
        bits = int(0.4 * v) + 4
        mask = (0xFF << (8 - bits)) & 0xFF
        return (img & mask).astype("uint8")
    if op == "solarize":
        t = 256 - int(25.6 * v)
        for y in range(h):
            for x in range(w):
                for k in range(c):
                    if img[y, x, k] >= t:
                        out[y, x, k] = 255 - img[y, x, k]
        return out
    # Geometric: PIL affine (output pixel centre -> input point), nearest, black.
    if op == "rotate":
        a_ = -math.radians(sign * 3 * v)
        cx, cy = w / 2, h / 2
        a, b, d_, e = math.cos(a_), math.sin(a_), -math.sin(a_), math.cos(a_)
        m = (a, b, cx - a * cx - b * cy, d_, e, cy - d_ * cx - e * cy)
    elif op == "shear_x":
        m = (1, sign * 0.03 * v, 0, 0, 1, 0)
    elif op == "shear_y":
        m = (1, 0, 0, sign * 0.03 * v, 1, 0)
    elif op == "translate_x":
        m = (1, 0, int(sign * 0.03 * v * w), 0, 1, 0)
    else:
        m = (1, 0, 0, 0, 1, int(sign * 0.03 * v * h))
    ambiguous = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            u = m[0] * (x + 0.5) + m[1] * (y + 0.5) + m[2]
            t = m[3] * (x + 0.5) + m[4] * (y + 0.5) + m[5]
            # float32 in TF vs float64 here: skip points on a pixel border.
            ambiguous[y, x] = min(abs(u - round(u)), abs(t - round(t))) < 1e-4
            xi, yi = math.floor(u), math.floor(t)
            out[y, x] = img[yi, xi] if (0 <= xi < w and 0 <= yi < h) else 0
    return out, ambiguous


def _fixed(n, op, v, sign, apply=True):
    return {
        "op_indices": np.full((n, 1), OP_NAMES.index(op), "int32"),
        "apply": np.full((n, 1), apply),
        "magnitudes": np.full((n, 1), v, "int32"),
        "signs": np.full((n, 1), sign, "float32"),
    }


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
@pytest.mark.parametrize("op", OP_NAMES)
def test_each_op_matches_numpy_reference(op, jit_compile):
    images = _images()
    layer = StrongAugment(num_ops=1, jit_compile=jit_compile)
    for v, sign in ((1, 1.0), (5, -1.0), (9, 1.0)):
        out = layer.transform_images(images, _fixed(len(images), op, v, sign))
        out = np.asarray(out).astype("uint8")
        for i, img in enumerate(images):
            ref = ref_op(img, op, v, sign)
            if isinstance(ref, tuple):
                ref, skip = ref
                assert skip.mean() < 0.05
                np.testing.assert_array_equal(out[i][~skip], ref[~skip], err_msg=op)
            else:
                np.testing.assert_array_equal(out[i], ref, err_msg=f"{op} v={v}")


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_mixed_ops_per_image_and_not_applied(jit_compile):
    images = _images(4)
    names = ["solarize", "brightness", "translate_x", "equalize"]
    t = {
        "op_indices": np.array([[OP_NAMES.index(n)] for n in names], "int32"),
        "apply": np.array([[True], [True], [True], [False]]),
        "magnitudes": np.array([[3], [4], [6], [2]], "int32"),
        "signs": np.array([[1.0], [1.0], [-1.0], [1.0]], "float32"),
    }
    layer = StrongAugment(num_ops=1, jit_compile=jit_compile)
    out = np.asarray(layer.transform_images(images, t))
    for i, name in enumerate(names[:3]):
        ref = ref_op(images[i], name, t["magnitudes"][i, 0], t["signs"][i, 0])
        ref = ref[0] if isinstance(ref, tuple) else ref
        np.testing.assert_array_equal(out[i], ref)
    np.testing.assert_array_equal(out[3], images[3])


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_two_steps_compose(jit_compile):
    images = _images(2)
    t = {
        "op_indices": np.array([[OP_NAMES.index("posterize"), OP_NAMES.index("solarize")]] * 2, "int32"),
        "apply": np.ones((2, 2), bool),
        "magnitudes": np.array([[2, 7]] * 2, "int32"),
        "signs": np.ones((2, 2), "float32"),
    }
    layer = StrongAugment(num_ops=2, jit_compile=jit_compile)
    out = np.asarray(layer.transform_images(images, t))
    for i in range(2):
        ref = ref_op(ref_op(images[i], "posterize", 2, 1), "solarize", 7, 1)
        np.testing.assert_array_equal(out[i], ref)


def test_value_range_0_1_and_float_input():
    images = _images(2)
    t = _fixed(2, "solarize", 4, 1.0)
    ref = np.asarray(StrongAugment(num_ops=1).transform_images(images, t))
    out = StrongAugment(num_ops=1, value_range=(0, 1)).transform_images(
        images.astype("float32") / 255.0, t
    )
    np.testing.assert_allclose(np.asarray(out) * 255.0, ref, atol=1e-3)
    out255 = StrongAugment(num_ops=1).transform_images(images.astype("float32"), t)
    np.testing.assert_array_equal(np.asarray(out255), ref)


@pytest.mark.parametrize("channels", [3, 1])
def test_xla_and_graph_paths_are_bit_identical(channels):
    # Many ops per image, every op drawn, odd sizes: the XLA program (per-image
    # conditionals, gather warp) equals the graph path (partition, TF's warp).
    images = np.random.default_rng(5).integers(0, 256, (24, 23, 29, channels)).astype("uint8")
    images[1] = images[1] // 3 + 50
    for seed in range(3):
        kwargs = dict(num_ops=8, rate=0.9, magnitude_range=(0, 12), seed=seed)
        xla = np.asarray(StrongAugment(**kwargs)(images))
        graph = np.asarray(StrongAugment(jit_compile=False, **kwargs)(images))
        np.testing.assert_array_equal(xla, graph)
        assert not np.array_equal(xla, images)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_blend_is_pil_float32_arithmetic(jit_compile):
    # Every (degenerate, pixel) pair at every factor of the table and at random
    # factors up to 2 (clipped), given at run time and as constants known when
    # the program compiles: the program must round like float32
    # `d + f * (x - d)`, product and sum each rounded (no FMA under XLA).
    from keras_contrast.layers import augment_ops as sa

    d, x = (g.astype("float32")[None, ..., None] for g in np.meshgrid(np.arange(256), np.arange(256)))
    factors = np.float32(
        [0.09 * v + 0.05 for v in range(12)]
        + list(np.random.default_rng(0).uniform(0.0, 2.0, 40))
        + [0.0, 1.0, 2.0]
    )
    blend = tf.function(
        lambda d, x, f: sa._blend(d, x, f, clip=True), jit_compile=jit_compile
    )
    for k, f in enumerate(factors):
        expected = np.clip(d + f * (x - d), 0, 255).astype("uint8")  # NumPy float32.
        np.testing.assert_array_equal(blend(d, x, f[None]), expected, err_msg=str(f))
        if k % 5 == 0:
            constant = tf.function(
                lambda d, x: sa._blend(d, x, tf.constant([f]), clip=True), jit_compile=jit_compile
            )
            np.testing.assert_array_equal(constant(d, x), expected, err_msg=f"constant {f}")


@pytest.mark.parametrize("name", ["color", "contrast", "sharpness"])
def test_enhance_kernels_with_a_constant_factor_equal_pillow_under_xla(name):
    # The kernels called directly, the factor a constant of the compiled program.
    from PIL import Image, ImageEnhance

    from keras_contrast.layers import augment_ops as sa

    images = np.random.default_rng(3).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    enhancer = {"color": ImageEnhance.Color, "contrast": ImageEnhance.Contrast,
                "sharpness": ImageEnhance.Sharpness}[name]
    for factor in (0.86, 0.41, 1.37):
        run = tf.function(lambda x: getattr(sa, name)(x, tf.constant([factor] * 2, tf.float32)),
                          jit_compile=True)
        expected = [np.asarray(enhancer(Image.fromarray(image)).enhance(np.float32(factor)))
                    for image in images]
        np.testing.assert_array_equal(run(images), np.stack(expected), err_msg=f"{name} {factor}")


def test_sharpness_filter_equals_pillow_smooth_for_every_sum():
    # The SMOOTH filter's `(sum + 6) // 13` as `((sum + 6) * 5042) >> 16`, for
    # every 3x3 sum an 8-bit image can give (0 .. 13 * 255, centre weight 5):
    # one 3x3 image per sum, its centre and ring chosen to give it, against
    # Pillow's `ImageFilter.SMOOTH`.
    from PIL import Image, ImageFilter

    from keras_contrast.layers import augment_ops as sa

    sums = np.arange(13 * 255 + 1)
    centre = np.minimum(255, sums // 5)
    ring_total = sums - 5 * centre  # 0 .. 2040: spread over the 8 ring pixels
    images = np.zeros((len(sums), 3, 3, 1), "uint8")
    ring = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)]
    for k, (i, j) in enumerate(ring):
        images[:, i, j, 0] = ring_total // 8 + (k < ring_total % 8)
    images[:, 1, 1, 0] = centre
    got_sums = images[..., 0].astype(int).sum(axis=(1, 2)) + 4 * images[:, 1, 1, 0].astype(int)
    np.testing.assert_array_equal(got_sums, sums)
    pillow = np.array([np.asarray(Image.fromarray(image[..., 0]).filter(ImageFilter.SMOOTH))[1, 1]
                       for image in images])
    for jit_compile in (True, False):
        sharpen = tf.function(lambda x: sa.sharpness(x, tf.zeros([len(sums)]), clip=True),
                              jit_compile=jit_compile)
        smooth = np.asarray(sharpen(images))[:, 1, 1, 0]  # factor 0: the filter alone
        np.testing.assert_array_equal(smooth, pillow)


# ------------------------------------------------------------------ statistics


def test_random_draws_statistics():
    layer = StrongAugment(seed=3)
    t = layer.get_random_transformation(np.zeros((2000, 4, 4, 3), "uint8"))
    ops = np.asarray(t["op_indices"])
    assert ops.shape == (2000, 5)
    # Per-image choice: many different ops within a batch at each step.
    assert all(len(np.unique(ops[:, s])) == 14 for s in range(5))
    counts = np.bincount(ops.ravel(), minlength=14) / ops.size
    np.testing.assert_allclose(counts, 1 / 14, atol=0.015)
    assert abs(np.asarray(t["apply"]).mean() - 0.5) < 0.02
    mags = np.asarray(t["magnitudes"])
    assert set(np.unique(mags)) == set(range(1, 10))
    assert abs(np.asarray(t["signs"]).mean()) < 0.05


def test_rate_zero_and_training_false_are_identity():
    images = _images(2)
    np.testing.assert_array_equal(StrongAugment(rate=0.0, seed=1)(images), images)
    np.testing.assert_array_equal(StrongAugment(seed=1)(images, training=False), images)


# ----------------------------------------------------------------- plumbing


def test_eager_tf_data_and_model_agree():
    images = _images(4)
    eager = np.asarray(StrongAugment(seed=7)(images))
    ds = tf.data.Dataset.from_tensors(images).map(StrongAugment(seed=7))
    np.testing.assert_array_equal(next(iter(ds)), eager)
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, StrongAugment(seed=7)(inputs))
    np.testing.assert_array_equal(model(images, training=True), eager)
    assert not np.array_equal(eager, images)


def test_unbatched_tf_data():
    images = _images(1)
    out = next(iter(tf.data.Dataset.from_tensors(images[0]).map(StrongAugment(seed=2))))
    assert out.shape == (H, W, 3)
    np.testing.assert_array_equal(out, StrongAugment(seed=2)(images[0]))


def test_config_and_keras_round_trip(tmp_path):
    layer = StrongAugment(num_ops=3, rate=0.7, value_range=(0, 1), jit_compile=False, seed=4)
    harness.assert_config_round_trip(layer)
    inputs = keras.Input((H, W, 3))
    model = keras.Model(inputs, StrongAugment(seed=4)(inputs, training=False))
    harness.assert_keras_round_trip(model, _images(2).astype("float32"), tmp_path)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_ops": -1}, "num_ops"),
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"magnitude_range": (3, 1)}, "magnitude_range"),
        ({"value_range": (1, 0)}, "value_range"),
        ({"shear_slope": -1}, "shear_slope"),
        ({"enhance_offset": float("nan")}, r"enhance_offset.*Received: enhance_offset=nan"),
        ({"enhance_slope": float("inf")}, r"enhance_slope.*Received: enhance_slope=inf"),
        ({"rotate_slope": True}, "rotate_slope"),
        ({"jit_compile": "yes"}, "jit_compile"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StrongAugment(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="rank"):
        StrongAugment(seed=0)(np.zeros((2, 2, 4, 4, 3), "uint8"))
    with pytest.raises(ValueError, match="channels"):
        StrongAugment(seed=0)(np.zeros((2, 4, 4, 4), "uint8"))


def test_solarize_thresholds_outside_uint8_and_flat_auto_contrast():
    from keras_contrast.layers import augment_ops as sa

    images = _images(4)
    images[2, ..., 1] = 77  # One flat channel: AutoContrast leaves it as is.
    thresholds = np.array([-5, 0, 256, 300], "int32")
    out = np.asarray(sa.solarize(tf.constant(images), tf.constant(thresholds)))
    for i, t in enumerate(thresholds):
        ref = np.where(images[i].astype(int) >= t, 255 - images[i], images[i])
        np.testing.assert_array_equal(out[i], ref.astype("uint8"))
    out = np.asarray(sa.auto_contrast(tf.constant(images)))
    for i in range(len(images)):
        np.testing.assert_array_equal(out[i], ref_op(images[i], "auto_contrast", 1, 1.0))


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
@pytest.mark.parametrize("size", [(1, 5), (5, 1), (1, 1), (2, 2), (3, 4)])
def test_tiny_images_match_numpy_reference(size, jit_compile):
    """Sides of 1 and 2 pixels (no interior for Sharpness's 3x3 filter) work for every op."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, *size, 3)).astype("uint8")
    layer = StrongAugment(num_ops=1, jit_compile=jit_compile)
    for op in OP_NAMES:
        out = np.asarray(layer.transform_images(images, _fixed(2, op, 9, -1.0))).astype("uint8")
        for i, img in enumerate(images):
            ref = ref_op(img, op, 9, -1.0)
            if isinstance(ref, tuple):
                ref, skip = ref
                np.testing.assert_array_equal(out[i][~skip], ref[~skip], err_msg=op)
            else:
                np.testing.assert_array_equal(out[i], ref, err_msg=f"{op} {size}")


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_empty_batches(jit_compile):
    layer = StrongAugment(seed=0, jit_compile=jit_compile)
    empty = np.zeros((0, H, W, 3), "uint8")
    assert layer(empty).shape == (0, H, W, 3)  # batch size known when traced
    unknown_batch = tf.function(
        layer, input_signature=[tf.TensorSpec((None, H, W, 3), tf.uint8)]
    )
    assert unknown_batch(empty).shape == (0, H, W, 3)  # batch size known when run
    # and the same trace still augments non-empty batches
    assert unknown_batch(_images(2)).shape == (2, H, W, 3)


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_unknown_height_and_width_in_tf_data(jit_compile):
    """`folder_source(...).batch(k).map(StrongAugment())` with sizes known only at run time."""
    sizes = [(7, 9), (12, 5)]
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (h, w, 3)).astype("uint8") for h, w in sizes]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(images), output_signature=tf.TensorSpec((None, None, 3), tf.uint8)
    ).batch(1)
    layer = StrongAugment(num_ops=2, jit_compile=jit_compile)
    fixed = {
        "op_indices": np.array([[OP_NAMES.index("rotate"), OP_NAMES.index("sharpness")]],
                               "int32"),
        "apply": np.ones((1, 2), bool),
        "magnitudes": np.array([[4, 7]], "int32"),
        "signs": np.ones((1, 2), "float32"),
    }
    outputs = list(dataset.map(lambda x: layer.transform_images(x, fixed)))
    for image, out in zip(images, outputs):
        expected = layer.transform_images(image[None], fixed)  # static shapes, eager
        np.testing.assert_array_equal(np.asarray(out), np.asarray(expected))
    # and with its own random draws
    for out, (h, w) in zip(dataset.map(StrongAugment(seed=1, jit_compile=jit_compile)), sizes):
        assert out.shape == (1, h, w, 3)
