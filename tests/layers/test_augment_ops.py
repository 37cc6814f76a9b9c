"""The shared op registry: every op against Pillow itself, exact pixels, both paths."""

import math
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageEnhance, ImageOps

from keras_contrast.layers import augment_ops


def _pillow(img, name, values):
    """The op `name` with its registry `values`, run with Pillow."""
    v = values[0]
    if name == "identity":
        return img
    if name == "auto_contrast":
        return ImageOps.autocontrast(img)
    if name == "equalize":
        return ImageOps.equalize(img)
    if name == "invert":
        return ImageOps.invert(img)
    if name in ("brightness", "color", "contrast", "sharpness"):
        enhancer = {"brightness": ImageEnhance.Brightness, "color": ImageEnhance.Color,
                    "contrast": ImageEnhance.Contrast, "sharpness": ImageEnhance.Sharpness}
        return enhancer[name](img).enhance(v)
    if name == "posterize":
        return ImageOps.posterize(img, int(v))
    if name == "solarize":
        return ImageOps.solarize(img, v)
    if name == "cutout":
        out = img.copy()
        y0, x0, y1, x1, fill = values
        out.paste(int(fill) if img.mode == "L" else (int(fill),) * 3,
                  (int(x0), int(y0), int(x1), int(y1)))
        return out
    matrix = {
        "shear_x": (1, v, 0, 0, 1, 0),
        "shear_y": (1, 0, 0, v, 1, 0),
        "translate_x": (1, 0, v, 0, 1, 0),
        "translate_y": (1, 0, 0, 0, 1, v),
    }
    return img.transform(img.size, Image.AFFINE, matrix[name])


def _rotations():
    angles = [0, 3, -3, 27, -27, 30 * 7 / 9, -30 * 7 / 9, 45, 90, -90, 180, 270, 123.456]
    return [(f"rotate{a:g}", "rotate", a) for a in angles]


CASES = [(name, name, None) for name in ("identity", "auto_contrast", "equalize", "invert")]
CASES += [(f"{n}{f:g}", n, f) for n in ("brightness", "color", "contrast", "sharpness")
          for f in (0.05, 0.1, 0.5, 0.86, 1.0, 1.3, 1.9)]
CASES += [(f"posterize{b}", "posterize", b) for b in range(1, 9)]
CASES += [(f"solarize{t:g}", "solarize", t) for t in (-3, 0, 28.33, 128, 128.5, 170, 255, 256)]
CASES += [(f"{n}{s:g}", n, s) for n in ("shear_x", "shear_y")
          for s in (0.03, -0.03, 0.27, -0.27, 0.3 * 8 / 9, -0.3)]
CASES += [(f"{n}{t}", n, t) for n in ("translate_x", "translate_y") for t in (1, -1, 4, -13, 40)]
CASES += _rotations()


def _values(name, arg, size):
    values = [0.0] * augment_ops.NUM_VALUES
    if name == "rotate":
        values[:2] = augment_ops.rotation_values(arg)
    elif arg is not None:
        values[0] = float(arg)
    return values


def _images(size, channels, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (3, *size, channels)).astype("uint8")
    x[1] = x[1] // 3 + 50  # Narrow range: AutoContrast and Equalize act.
    return x


def _run(images, names, values, jit_compile):
    n = len(images)
    ops = np.array([augment_ops.op_ids(names)] * n, "int32")
    values = np.array([values] * n, "float64")
    return np.asarray(augment_ops.apply_ops(
        tf.constant(images), tf.constant(ops), tf.ones(ops.shape, tf.bool),
        tf.constant(values), clip=True, jit_compile=jit_compile))


def _reference(images, names, values):
    out = []
    for image in images:
        img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        for name, v in zip(names, values):
            img = _pillow(img, name, v if name != "rotate" else None)
        arr = np.asarray(img)
        out.append(arr[..., None] if arr.ndim == 2 else arr)
    return np.stack(out)


def _pillow_rotate_reference(images, degrees):
    out = []
    for image in images:
        img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        arr = np.asarray(img.rotate(degrees))
        out.append(arr[..., None] if arr.ndim == 2 else arr)
    return np.stack(out)


@pytest.mark.parametrize("size,channels", [((32, 32), 3), ((23, 29), 3), ((17, 17), 1)],
                         ids=["32x32", "23x29", "17x17-L"])
@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_every_op_equals_pillow(size, channels, jit_compile):
    images = _images(size, channels)
    failures = []
    for case, name, arg in CASES:
        values = _values(name, arg, size)
        got = _run(images, [name], [values], jit_compile)
        if name == "rotate":
            expected = _pillow_rotate_reference(images, arg)
        else:
            expected = _reference(images, [name], [values])
        if not np.array_equal(got, expected):
            failures.append(f"{case}: {int(np.sum(got != expected))} values differ")
    assert not failures, failures


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_cutout_equals_pillow_paste(jit_compile):
    images = _images((19, 23), 3)
    for box in ((0, 0, 8, 8), (5, 7, 13, 20), (11, 15, 19, 23), (4, 0, 5, 23), (3, 3, 3, 9)):
        values = [*box, 128.0]
        got = _run(images, ["cutout"], [values], jit_compile)
        np.testing.assert_array_equal(got, _reference(images, ["cutout"], [values]), str(box))
        inside = np.zeros((19, 23), bool)
        inside[box[0]:box[2], box[1]:box[3]] = True
        assert np.all(got[:, inside] == 128) and np.array_equal(got[:, ~inside], images[:, ~inside])


@pytest.mark.parametrize("jit_compile", [True, False], ids=["xla", "graph"])
def test_programs_of_several_ops_compose_as_pillow(jit_compile):
    rng = np.random.default_rng(3)
    images = _images((21, 26), 3, seed=4)
    names = [name for name in augment_ops.OP_INDEX if name != "cutout"]
    for trial in range(4):
        chosen = list(rng.choice(names, 4))
        args = {"rotate": 17.5, "posterize": 5, "solarize": 99, "shear_x": -0.2, "shear_y": 0.15,
                "translate_x": -3, "translate_y": 6}
        values = [_values(n, args.get(n, 1.4), None) for n in chosen]
        got = _run(images, chosen, values, jit_compile)
        expected = images.copy()
        out = []
        for image in expected:
            img = Image.fromarray(image)
            for n in chosen:
                img = img.rotate(args["rotate"]) if n == "rotate" else _pillow(
                    img, n, _values(n, args.get(n, 1.4), None))
            out.append(np.asarray(img))
        np.testing.assert_array_equal(got, np.stack(out), err_msg=str(chosen))


def test_rotation_values_are_pillows_matrix():
    # Pillow's rotate matrix, written out: angle mod 360, rounded to 15 digits.
    for degrees in (-27.0, 3.0, 90.0, 359.5):
        a = -math.radians(degrees % 360.0)
        assert augment_ops.rotation_values(degrees) == (round(math.cos(a), 15), round(math.sin(a), 15))
    assert augment_ops.rotation_values(-6.0) != augment_ops.rotation_values(6.0)


def test_not_applied_steps_and_empty_batches():
    images = _images((9, 11), 3)
    ops = np.array([augment_ops.op_ids(["invert", "equalize"])] * 3, "int32")
    values = np.zeros((3, 2, augment_ops.NUM_VALUES))
    apply = np.array([[False, False], [True, False], [False, True]])
    for jit in (True, False):
        out = np.asarray(augment_ops.apply_ops(images, ops, apply, values, jit_compile=jit))
        np.testing.assert_array_equal(out[0], images[0])
        np.testing.assert_array_equal(out[1], 255 - images[1])
        np.testing.assert_array_equal(out[2], np.asarray(ImageOps.equalize(Image.fromarray(images[2]))))
        empty = augment_ops.apply_ops(images[:0], ops[:0], apply[:0], values[:0], jit_compile=jit)
        assert empty.shape == (0, 9, 11, 3)


def test_unknown_op_names_are_named():
    with pytest.raises(ValueError, match="'swirl'"):
        augment_ops.op_ids(["rotate", "swirl"])


def test_every_registry_op_has_a_pillow_case():
    tested = {name for _, name, _ in CASES} | {"cutout"}
    assert tested == set(augment_ops.OP_INDEX)
    assert set(op.kernel for op in augment_ops.OPS) == set(augment_ops.KERNELS)


def test_row_gather_is_available():
    # The XLA path's warps need XLA's gather with its own dimension numbers
    # (private TensorFlow modules); without them they fall back to `warp_fixed`.
    assert augment_ops._xla is not None and augment_ops._xla_data_pb2 is not None


@pytest.mark.parametrize("size,channels", [((37, 53), 3), ((48, 31), 1)], ids=["rgb", "L"])
def test_row_and_column_warps_equal_pillow_at_any_offset(size, channels):
    # The XLA row-copy kernel (and the per-pixel one on vertical shears) on maps
    # that combine a shear with translations in both directions, including
    # offsets beyond one and two image sides.
    images = _images(size, channels, seed=7)
    height, width = size
    kernels = {"shift_rows": augment_ops.shift_rows_xla, "warp": augment_ops.warp_xla}
    cases = []
    for s in (0.0, 0.3, -0.41, 1.7):
        for tx, ty in ((0, 0), (5, -3), (-width, 2), (2 * width + 1, 0), (0, -3 * height),
                       (-7, height - 1), (0.4, -0.6)):
            cases.append(("shift_rows", (1, s, tx, 0, 1, ty)))
            cases.append(("warp", (1, 0, tx, s, 1, ty)))
    run = tf.function(lambda x, c, kernel: kernels[kernel](x, c), jit_compile=True)
    for kernel, matrix in cases:
        # The whole batch at once, each image with the same map.
        coefficients = tf.cast(augment_ops.affine_coefficients(
            *[tf.constant([float(v)] * len(images), tf.float64) for v in matrix]), tf.int32)
        got = np.asarray(run(images, coefficients, kernel))
        expected = []
        for image in images:
            img = Image.fromarray(image[..., 0] if channels == 1 else image)
            arr = np.asarray(img.transform(img.size, Image.AFFINE, matrix))
            expected.append(arr[..., None] if arr.ndim == 2 else arr)
        np.testing.assert_array_equal(got, np.stack(expected), err_msg=f"{kernel} {matrix}")


@pytest.mark.parametrize("size,channels", [((37, 53), 3), ((48, 31), 1)], ids=["rgb", "L"])
def test_xla_warp_equals_pillow_for_any_affine_map(size, channels):
    # `warp_xla` relies on XLA's gather clamping start indices onto the black
    # border: rotations about the centre, maps that send part or all of the
    # image far outside (beyond two sides, negative and positive), a scaling.
    images = _images(size, channels, seed=11)
    height, width = size
    matrices = []
    for degrees in (0.0, 17.0, -30.0, 90.0, 135.5, 180.0, 271.0):
        cos, sin = augment_ops.rotation_values(degrees)
        cx, cy = width / 2.0, height / 2.0
        matrices.append((cos, sin, (cos * -cx + sin * -cy) + cx,
                         -sin, cos, (-sin * -cx + cos * -cy) + cy))
    matrices += [(1, 0, 3 * width, 0, 1, 0), (1, 0, -2.5 * width, 0, 1, -4 * height),
                 (0.7, 0.2, -5, -0.3, 1.4, 6), (-1, 0, width, 0, -1, height),
                 (1, 0.3, -width, 0.2, 1, 2 * height)]
    run = tf.function(augment_ops.warp_xla, jit_compile=True)

    def pillow(image, matrix):
        img = Image.fromarray(image[..., 0] if channels == 1 else image)
        arr = np.asarray(img.transform(img.size, Image.AFFINE, matrix))
        return arr[..., None] if arr.ndim == 2 else arr

    for start in range(len(matrices)):
        # Each image of the batch with its own map.
        batch_matrices = [matrices[(start + k) % len(matrices)] for k in range(len(images))]
        coefficients = tf.cast(augment_ops.affine_coefficients(
            *[tf.constant([float(m[j]) for m in batch_matrices], tf.float64) for j in range(6)]),
            tf.int32)
        got = np.asarray(run(images, coefficients))
        expected = np.stack([pillow(image, m) for image, m in zip(images, batch_matrices)])
        np.testing.assert_array_equal(got, expected, err_msg=str(batch_matrices))
    empty = np.zeros((0,) + images.shape[1:], "uint8")
    for kernel in (augment_ops.warp_xla, augment_ops.shift_rows_xla):
        out = tf.function(kernel, jit_compile=True)(empty, tf.zeros([0, 6], tf.int32))
        assert out.shape == empty.shape


def test_images_of_other_channel_counts_are_refused():
    for channels in (2, 4):
        images = np.zeros((2, 5, 5, channels), "uint8")
        message = re.escape(f"C in {{1, 3}}. Received: images.shape=(2, 5, 5, {channels})")
        with pytest.raises(ValueError, match=message):
            augment_ops.apply_ops(images, np.zeros((2, 1), "int32"), np.ones((2, 1), bool),
                                  np.zeros((2, 1, augment_ops.NUM_VALUES)))
