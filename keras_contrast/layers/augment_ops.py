"""One registry of Pillow-exact image ops, shared by `StrongAugment` and `AutoAugment`.

Every op works on uint8 batches `[n, H, W, C]` (C in {1, 3}) and reproduces
Pillow bit for bit (`PIL.ImageOps`, `PIL.ImageEnhance`, `Image.rotate` and
`Image.transform(AFFINE)` with nearest resampling and black fill). An op is
one `Op` entry of `OPS`: its name, the kernel that runs it and the function
that turns its per-image *values* (float64 `[n, NUM_VALUES]`, what a layer
draws or looks up) into the kernel's parameters (float64 `[n, NUM_PARAMS]`).
Several ops may share a kernel: the five geometric ops take Pillow's 16.16
fixed-point affine coefficients as parameters and run on one of two warp
kernels (the general per-pixel one for rotations and vertical shears; on the
XLA path, translations and horizontal shears move whole rows and run as row
copies when the image width is known when the program is traced; otherwise,
e.g. images of varying size mapped one by one in `tf.data`, they take the
per-pixel warp, with the same pixels).

`apply_ops` runs a whole program of ops (`[B, steps]` op ids, values and
apply flags) on a batch, either as one XLA program that loops over the images
and runs, per step, only the kernel the image drew (`jit_compile=True`), or
with plain TensorFlow ops vectorised over the batch (the batch partitioned by
kernel at each step and stitched back). Both give the same bits.

Adding an op: one `Op` entry below (a new kernel in `KERNELS` if no existing
one does the job) and its exact-pixel test against Pillow in
`tests/layers/test_augment_ops.py`.

Values of each op (column 0 unless said otherwise):

- `identity`, `auto_contrast`, `equalize`, `invert`: none.
- `brightness`, `color`, `contrast`, `sharpness`: the `ImageEnhance` factor
  (rounded to float32, as Pillow's C blend takes it).
- `posterize`: the number of bits kept, 0..8.
- `solarize`: the threshold; pixels `>= threshold` are inverted (any real).
- `rotate`: `(cos, sin)` in columns 0 and 1 as `Image.rotate` rounds them
  (`rotation_values(degrees)` computes them in Python, exactly as Pillow).
- `shear_x` / `shear_y`: the affine coefficient `s` of `(1, s, 0, 0, 1, 0)` /
  `(1, 0, 0, s, 1, 0)`.
- `translate_x` / `translate_y`: the integer offset `t` of
  `(1, 0, t, 0, 1, 0)` / `(1, 0, 0, 0, 1, t)`: output pixel `(x, y)` reads
  input `(x + t, y)` / `(x, y + t)`.
- `cutout`: the box `y0, x0, y1, x1` (rows `y0 <= y < y1`, columns
  `x0 <= x < x1`, clipped to the image) in columns 0-3 and the fill level
  (0..255) in column 4.
"""

import collections
import math

import tensorflow as tf

from keras_contrast.layers import _image_utils

try:  # XLA's gather with its own slice sizes (private TensorFlow modules, TF 2.x).
    from tensorflow.compiler.tf2xla.python import xla as _xla
    from tensorflow.compiler.xla import xla_data_pb2 as _xla_data_pb2
except ImportError:  # pragma: no cover - checked by test_row_gather_is_available
    _xla = _xla_data_pb2 = None

NUM_VALUES = 5
NUM_PARAMS = 6

Op = collections.namedtuple("Op", ["name", "kernel", "params"])
Op.__doc__ = """A registry entry: `kernel` names an entry of `KERNELS`; `params(values,
height, width)` maps float64 values `[n, NUM_VALUES]` and the image size (float64
scalars) to float64 kernel parameters `[n, NUM_PARAMS]`."""


# ---------------------------------------------------------------------------
# Kernels on uint8 `[n, H, W, C]` with per-image parameters `[n]`.


_GRAY_WEIGHTS = (19595.0, 38470.0, 7471.0)


def _gray_float(images_float):
    """PIL's `convert("L")` on float32 `[n, H, W, C]`: `[n, H, W, 1]` float32.

    (19595 R + 38470 G + 7471 B + 2**15) >> 16, computed in float32: every
    product and partial sum is an integer below 2**24, hence exact in any
    order. One reduction over the channel axis (rather than three strided
    channel slices) keeps XLA's loops vectorised.
    """
    if images_float.shape[-1] == 1:
        return images_float
    total = tf.reduce_sum(
        images_float * tf.constant(_GRAY_WEIGHTS), axis=-1, keepdims=True
    )
    return tf.floor((total + 32768.0) * (1.0 / 65536.0))


def _rounded(value):
    """Rounds a float64 result to float32.

    The float32 ops of Pillow are computed as float64 ops, each rounded back to
    float32 with this. That gives the same value: float64 has more than
    2 * 24 + 2 mantissa bits, so double rounding cannot change a sum, product
    or quotient of float32 values. It also stops a compiler (XLA on CPU, nvcc
    on GPU) from fusing a multiply and an add into one FMA, which rounds once
    and does not match Pillow (116 of the 65,536 `(d, x)` pairs differed at
    factor 0.86). Float32 arithmetic with the product's bits OR-ed with an
    opaque zero ran about 1.6x faster but was fused again whenever the
    compiler could prove the zero (a factor known at compile time): measured,
    and not kept.
    """
    return tf.cast(tf.cast(value, tf.float32), tf.float64)


def _blend(degenerate, images, factors, clip=True):
    """PIL `Image.blend(degenerate, image, f)`: truncated `d + f * (x - d)`.

    `degenerate` and `images` are float32 (integer values 0..255). With
    `clip=False` (all factors in [0, 1]) the result already lies in 0..255.
    Computed in float32 arithmetic, exactly as PIL (see `_rounded`).
    """
    f = tf.cast(tf.reshape(factors, [-1, 1, 1, 1]), tf.float64)
    d = tf.cast(degenerate, tf.float64)
    # `x - d` is an exact integer; the product and the sum are rounded.
    out = _rounded(d + _rounded(f * (tf.cast(images, tf.float64) - d)))
    if clip:
        out = tf.clip_by_value(out, 0.0, 255.0)
    return tf.cast(out, tf.uint8)  # Truncation, as PIL's float -> UINT8.


def auto_contrast(images):
    """`PIL.ImageOps.autocontrast`: per channel, `(x - lo) * 255 // (hi - lo)`.

    In float32: `(x - lo) * 255` is exact and a correctly rounded quotient of
    integers below 2**16 never reaches the next integer, so `floor` is exact.
    Flat channels map through `lo = 0, span = 255`, i.e. unchanged.
    """
    lo = tf.cast(tf.reduce_min(images, axis=[1, 2], keepdims=True), tf.float32)
    hi = tf.cast(tf.reduce_max(images, axis=[1, 2], keepdims=True), tf.float32)
    flat = hi <= lo
    lo = tf.where(flat, 0.0, lo)
    span = tf.where(flat, 255.0, hi - lo)
    x = tf.cast(images, tf.float32)
    return tf.cast(tf.floor((x - lo) * 255.0 / span), tf.uint8)


def brightness(images, factors, clip=True):
    """`ImageEnhance.Brightness`: a blend with black, `f * x` truncated."""
    # d = 0: `0 + f * (x - 0)` is `f * x` exactly.
    f = tf.reshape(factors, [-1, 1, 1, 1])
    out = f * tf.cast(images, tf.float32)
    if clip:
        out = tf.clip_by_value(out, 0.0, 255.0)
    return tf.cast(out, tf.uint8)


def color(images, factors, clip=True):
    """`ImageEnhance.Color`: a blend with the image's `convert("L")`."""
    x = tf.cast(images, tf.float32)
    return _blend(_gray_float(x), x, factors, clip)


def contrast(images, factors, clip=True):
    """`ImageEnhance.Contrast`: a blend with the grey level `int(mean(L) + 0.5)`."""
    x = tf.cast(images, tf.float32)
    gray = tf.cast(_gray_float(x), tf.int32)
    pixels = tf.shape(gray)[1] * tf.shape(gray)[2]
    total = tf.reduce_sum(gray, axis=[1, 2, 3], keepdims=True)
    # int(mean + 0.5), exactly.
    mean = tf.cast((2 * total + pixels) // (2 * pixels), tf.float32)
    return _blend(mean, x, factors, clip)


def sharpness(images, factors, clip=True):
    """PIL `ImageEnhance.Sharpness`: blend with the 3x3 SMOOTH filter.

    Border pixels keep their value (PIL copies them into the filtered image,
    and `blend(x, x, f)` is `x`), so only the interior is blended; an image
    with a side under 3 pixels has no interior and is returned as it is. The
    3x3 sum (centre weight 5) is separable box + 4 centre, in int16 (at most
    13 * 255); the filter output `(sum + 6) // 13` is the exact
    `((sum + 6) * 5042) >> 16` (checked against Pillow for every sum in the
    tests): 316 -> 189 us per 224-px image under XLA against float32 sums and
    a division (BENCHMARKS.md). Rows are flattened to `[n, H, W * C]`, where a one-pixel
    shift is a shift by `C`: slices along a long contiguous axis vectorise,
    along `C` they do not. The sums run on a zero-padded copy, so every shape
    (1-pixel sides, sizes known only when XLA compiles) has the same ops; the
    border is then taken from the input.
    """
    shape = tf.shape(images)
    c = images.shape[-1]
    rows = tf.reshape(images, [shape[0], shape[1], shape[2] * c])
    centre = tf.cast(rows, tf.int16)
    x = tf.pad(centre, [[0, 0], [1, 1], [c, c]])
    across = x[:, :, : -2 * c] + x[:, :, c:-c] + x[:, :, 2 * c :]
    box = across[:, :-2] + across[:, 1:-1] + across[:, 2:]
    smooth = tf.bitwise.right_shift(tf.cast(box + 4 * centre + 6, tf.int32) * 5042, 16)
    blended = _blend(
        tf.cast(smooth, tf.float32)[..., None],
        tf.cast(centre, tf.float32)[..., None],
        factors,
        clip,
    )[..., 0]
    row = tf.range(shape[1])[:, None]
    column = tf.range(shape[2] * c)[None, :] // c
    interior = (row > 0) & (row < shape[1] - 1) & (column > 0) & (column < shape[2] - 1)
    out = tf.where(interior[None], blended, rows)
    return tf.reshape(out, shape)


def _materialized(table):
    """`table` (uint8 `[k]`) unchanged, computed once before it is read.

    XLA fuses a small table's computation into the gather that reads it and
    recomputes it for every element gathered (Equalize: the look-up table's
    integer division ran once per pixel, seen in the optimised HLO; an XLA
    optimisation barrier did not stop it). Passing the table's bytes, as
    int32 words, through an OR with a zero computed at run time (`isnan` of a
    word converted to float32, never true) makes XLA's fusion pass, which
    does not evaluate it, compute the table on its own: 500 -> 170 us per
    224-px Equalize under XLA (BENCHMARKS.md). A compiler that did fold the
    zero would only lose the speed. The graph path is unaffected.
    """
    padding = (-tf.size(table)) % 4
    words = tf.bitcast(tf.reshape(tf.pad(table, [[0, padding]]), [-1, 4]), tf.int32)
    zero = tf.cast(tf.reduce_any(tf.math.is_nan(tf.cast(words[:1], tf.float32))), tf.int32)
    flat = tf.reshape(tf.bitcast(tf.bitwise.bitwise_or(words, zero), tf.uint8), [-1])
    return flat[: tf.size(table)]


def equalize(images):
    """`PIL.ImageOps.equalize`, per image and channel.

    One scatter-add histogram of all images and channels (`unsorted_segment_sum`
    on the channels-last values, each offset to its own 256 bins; under XLA on
    CPU about 2x faster than `DenseBincount`), the look-up tables computed
    once (`_materialized`), then one gather from the concatenated tables with
    the same offset values.
    """
    shape = tf.shape(images)
    channels = images.shape[-1]
    rows = shape[0] * channels
    pixels = shape[1] * shape[2]
    offsets = tf.reshape(tf.range(rows) * 256, [shape[0], 1, 1, channels])
    bins = tf.cast(images, tf.int32) + offsets
    hist = tf.math.unsorted_segment_sum(tf.ones_like(bins), bins, rows * 256)
    hist = tf.reshape(hist, [rows, 256])
    levels = tf.range(256)
    last = tf.reduce_max(tf.where(hist > 0, levels, -1), axis=1)
    last_count = tf.gather(hist, tf.maximum(last, 0), batch_dims=1)
    step = (pixels - last_count) // 255
    cum = tf.cumsum(hist, axis=1, exclusive=True)
    safe_step = tf.maximum(step, 1)[:, None]
    lut = tf.minimum((safe_step // 2 + cum) // safe_step, 255)
    lut = tf.cast(tf.where(step[:, None] > 0, lut, levels[None, :]), tf.uint8)
    return tf.gather(_materialized(tf.reshape(lut, [-1])), bins)


def posterize(images, bits):
    """`PIL.ImageOps.posterize`: keep the `bits` (int32 `[n]`, 0..8) high bits."""
    mask = tf.bitwise.left_shift(255, 8 - bits) % 256
    mask = tf.cast(tf.reshape(mask, [-1, 1, 1, 1]), tf.uint8)
    return tf.bitwise.bitwise_and(images, mask)


def solarize(images, thresholds):
    """Invert values `>= t`: `x ^ 255` where inverted, on uint8.

    `thresholds` are int32 (any value: <= 0 inverts all, >= 256 none).
    """
    t = tf.reshape(thresholds, [-1, 1, 1, 1])
    t_u8 = tf.cast(tf.clip_by_value(t, 0, 255), tf.uint8)
    flip = tf.cast(tf.where(t > 255, 0, 255), tf.uint8)
    mask = tf.cast(images >= t_u8, tf.uint8) * flip
    return tf.bitwise.bitwise_xor(images, mask)


def invert(images):
    """`PIL.ImageOps.invert`: `255 - x`."""
    return tf.bitwise.invert(images)


def cutout(images, boxes, fills):
    """Fills the box `y0, x0, y1, x1` (int32 `[n, 4]`) of each image with `fills`
    (int32 `[n]`), as `Image.paste(fill, (x0, y0, x1, y1))`."""
    shape = tf.shape(images)
    rows = tf.range(shape[1])[None, :, None]
    cols = tf.range(shape[2])[None, None, :]
    y0, x0, y1, x1 = (boxes[:, k, None, None] for k in range(4))
    inside = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)
    fill = tf.cast(tf.reshape(fills, [-1, 1, 1, 1]), images.dtype)
    return tf.where(inside[..., None], fill, images)


def _source_pixels(coefficients, height, width):
    """Pillow's source `(row, col)` (int32 `[n, H, W]` each) of every output
    pixel: `((A5 + x A3 + y A4) >> 16, (A2 + x A0 + y A1) >> 16)`. `>> 16`
    of a signed int is Pillow's (arithmetic) shift: a floor division."""
    a = [tf.reshape(coefficients[:, k], [-1, 1, 1]) for k in range(6)]
    xs = tf.reshape(tf.range(width), [1, 1, -1])
    ys = tf.reshape(tf.range(height), [1, -1, 1])
    col = tf.bitwise.right_shift(a[2] + xs * a[0] + ys * a[1], 16)
    row = tf.bitwise.right_shift(a[5] + xs * a[3] + ys * a[4], 16)
    return row, col


def warp_fixed(images, coefficients):
    """Pillow's nearest-neighbour `Image.transform(AFFINE)`, black fill.

    `coefficients` are int32 `[n, 6]`, Pillow's 16.16 fixed-point
    `(A0, A1, A2, A3, A4, A5)` (`affine_coefficients`): output pixel `(x, y)`
    reads input `((A2 + x A0 + y A1) >> 16, (A5 + x A3 + y A4) >> 16)`, black
    where that is outside the image. This is Pillow's `affine_fixed`, used
    whenever the four corners map within 2**15 pixels; for translations
    (Pillow's `ImagingScaleAffine` path) it gives the same pixels. Integer
    arithmetic only: exact in XLA and in the graph path alike.

    The gather reads a copy with a one-pixel black border (points outside
    the image are clamped onto it), and RGB pixels are gathered as one int32
    each (the channels padded to 4 bytes): one scalar gather per pixel
    rather than a 3-element slice. The XLA path runs `warp_xla`.
    """
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    channels = images.shape[-1]
    row, col = _source_pixels(coefficients, height, width)
    col = tf.clip_by_value(col, -1, width) + 1
    row = tf.clip_by_value(row, -1, height) + 1
    index = (tf.reshape(tf.range(n), [-1, 1, 1]) * (height + 2) + row) * (width + 2) + col
    padded = tf.pad(_pixels(images), [[0, 0], [1, 1], [1, 1]])
    return _unpixels(tf.gather(tf.reshape(padded, [-1]), index), channels)


def _pixels(images):
    """uint8 `[n, H, W, C]` -> one element per pixel `[n, H, W]`: RGB as one
    int32 (padded to 4 bytes), one channel as itself. `_unpixels` inverts."""
    if images.shape[-1] == 3:
        return tf.bitcast(tf.pad(images, [[0, 0], [0, 0], [0, 0], [0, 1]]), tf.int32)
    return images[..., 0]


def _unpixels(pixels, channels):
    if channels == 3:
        return tf.bitcast(pixels, tf.uint8)[..., :3]
    return pixels[..., None]


def _gather_dimensions(offset_dims, collapsed_slice_dims, start_index_map, index_vector_dim):
    dims = _xla_data_pb2.GatherDimensionNumbers()
    dims.offset_dims.extend(offset_dims)
    dims.collapsed_slice_dims.extend(collapsed_slice_dims)
    dims.start_index_map.extend(start_index_map)
    dims.index_vector_dim = index_vector_dim
    return dims


def warp_xla(images, coefficients):
    """`warp_fixed` under XLA: one XLA gather of `[1, 1, 1, C]` pixel slices.

    XLA's gather clamps every start index into the operand, so with a
    one-pixel black border around the image any source point outside it
    reads black, as in Pillow, without clipping the indices first. Reading
    the C bytes of a pixel directly (no 4-byte packing): 250 -> 50 us per
    224-px rotation under XLA (BENCHMARKS.md). An empty batch (whose gather
    slices would not fit) and a missing XLA module take `warp_fixed`.
    """
    if _xla is None or images.shape[0] == 0:
        return warp_fixed(images, coefficients)
    shape = tf.shape(images)
    row, col = _source_pixels(coefficients, shape[1], shape[2])
    batch = tf.broadcast_to(tf.reshape(tf.range(shape[0]), [-1, 1, 1]), tf.shape(row))
    starts = tf.stack([batch, row + 1, col + 1], axis=3)
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    dims = _gather_dimensions([3], [0, 1, 2], [0, 1, 2], 3)
    return _xla.gather(padded, starts, dims, [1, 1, 1, images.shape[-1]])


def _shift_rows(images, row_offset, col_base, col_step):
    """`out[i, y, x] = images[i, y + t_i, x + s_i(y)]`, 0 outside, on uint8
    `[n, H, W, C]` with `t_i = row_offset[i]` and
    `s_i(y) = (col_base[i] + y col_step[i]) >> 16`.

    Each output row is one contiguous slice of a copy with W zero pixels on
    both sides, read by one XLA gather of whole rows: a row copy instead of
    a gather per pixel (BENCHMARKS.md).
    """
    shape = tf.shape(images)
    n, height = shape[0], shape[1]
    width, channels = images.shape[2], images.shape[3]
    zeros = tf.zeros_like(images)
    padded = tf.concat([zeros, images, zeros], axis=2)
    rows = tf.range(height)[None, :]
    source_rows = rows + row_offset[:, None]
    inside = (source_rows >= 0) & (source_rows < height)
    shift = tf.bitwise.right_shift(col_base[:, None] + rows * col_step[:, None], 16)
    starts = tf.stack(
        [
            tf.broadcast_to(tf.range(n)[:, None], tf.shape(source_rows)),
            tf.clip_by_value(source_rows, 0, height - 1),
            width + tf.clip_by_value(shift, -width, width),
        ],
        axis=2,
    )
    dims = _gather_dimensions([2, 3], [0, 1], [0, 1, 2], 2)
    out = _xla.gather(padded, starts, dims, [1, 1, width, channels])
    return tf.where(inside[..., None, None], out, tf.zeros_like(out))


def shift_rows_xla(images, coefficients):
    """`warp_fixed` for the affine maps that move whole rows (`A0 = A4 = 65536`,
    `A3 = 0`: translations and horizontal shears), under XLA only.

    With `A0 = 65536`, Pillow's `(A2 + x A0 + y A1) >> 16` is exactly
    `x + ((A2 + y A1) >> 16)`, and with `A3 = 0`, `A4 = 65536` the source row
    is `y + (A5 >> 16)`: output row `y` is input row `y + (A5 >> 16)` shifted
    by a whole number of pixels. Falls back to `warp_xla` when the width is
    not known when the program is traced (the gather needs it) and for an
    empty batch.
    """
    if _xla is None or images.shape[2] is None or images.shape[0] == 0:
        return warp_xla(images, coefficients)
    c = coefficients
    return _shift_rows(images, tf.bitwise.right_shift(c[:, 5], 16), c[:, 2], c[:, 1])


def _factor(params):
    return tf.cast(params[:, 0], tf.float32)


def _integer(params, column=0):
    return tf.cast(params[:, column], tf.int32)


# name -> fn(images, params float64 [n, NUM_PARAMS], clip). `clip`: whether
# blend factors may exceed 1 (else the blends cannot leave 0..255). The two
# warps share Pillow's fixed-point coefficients as parameters; "shift_rows"
# takes only the maps that move whole rows, which the XLA path runs as row
# copies (`XLA_KERNELS`).
KERNELS = {
    "identity": lambda images, params, clip: images,
    "auto_contrast": lambda images, params, clip: auto_contrast(images),
    "brightness": lambda images, params, clip: brightness(images, _factor(params), clip),
    "color": lambda images, params, clip: color(images, _factor(params), clip),
    "contrast": lambda images, params, clip: contrast(images, _factor(params), clip),
    "equalize": lambda images, params, clip: equalize(images),
    "posterize": lambda images, params, clip: posterize(images, _integer(params)),
    "sharpness": lambda images, params, clip: sharpness(images, _factor(params), clip),
    "solarize": lambda images, params, clip: solarize(images, _integer(params)),
    "invert": lambda images, params, clip: invert(images),
    "cutout": lambda images, params, clip: cutout(
        images, tf.cast(params[:, :4], tf.int32), _integer(params, 4)
    ),
    "warp": lambda images, params, clip: warp_fixed(images, tf.cast(params, tf.int32)),
    "shift_rows": lambda images, params, clip: warp_fixed(images, tf.cast(params, tf.int32)),
}
KERNEL_NAMES = tuple(KERNELS)
# The XLA path's kernels: the same pixels, faster programs where XLA allows.
XLA_KERNELS = dict(
    KERNELS,
    warp=lambda images, params, clip: warp_xla(images, tf.cast(params, tf.int32)),
    shift_rows=lambda images, params, clip: shift_rows_xla(images, tf.cast(params, tf.int32)),
)


# ---------------------------------------------------------------------------
# Values -> kernel parameters.


def _pad(columns):
    """Stacks float64 `[n]` columns into `[n, NUM_PARAMS]`, zero-padded."""
    zeros = tf.zeros_like(columns[0])
    return tf.stack(list(columns) + [zeros] * (NUM_PARAMS - len(columns)), axis=1)


def _no_params(values, height, width):
    return tf.zeros([tf.shape(values)[0], NUM_PARAMS], tf.float64)


def _first_value_float32(values, height, width):
    return _pad([tf.cast(tf.cast(values[:, 0], tf.float32), tf.float64)])


def _bits(values, height, width):
    return _pad([tf.clip_by_value(tf.floor(values[:, 0]), 0.0, 8.0)])


def _threshold(values, height, width):
    # `x >= t` for integer pixels is `x >= ceil(t)`; clipped so that the int32
    # cast stays defined (-1 inverts every pixel, 256 none).
    return _pad([tf.clip_by_value(tf.math.ceil(values[:, 0]), -1.0, 256.0)])


def _cutout_box(values, height, width):
    box = [values[:, k] for k in range(4)]
    limits = (height, width, height, width)
    box = [tf.clip_by_value(tf.floor(v), 0.0, limit) for v, limit in zip(box, limits)]
    return _pad(box + [tf.clip_by_value(tf.round(values[:, 4]), 0.0, 255.0)])


def affine_coefficients(a, b, c, d, e, f):
    """Pillow's fixed-point coefficients of the affine map `(a, b, c, d, e, f)`.

    `FIX(v) = floor(v * 65536 + 0.5)` of `a, b, d, e` and of the pixel-centre
    offsets `c + a / 2 + b / 2`, `f + d / 2 + e / 2`, in float64 with Pillow's
    order of operations (`Geometry.c`, `affine_fixed`). Returned as float64
    `[n, 6]` (exact integers).
    """

    def fix(v):
        return tf.floor(v * 65536.0 + 0.5)

    return tf.stack(
        [
            fix(a),
            fix(b),
            fix(c + a * 0.5 + b * 0.5),
            fix(d),
            fix(e),
            fix(f + d * 0.5 + e * 0.5),
        ],
        axis=1,
    )


def _rotate(values, height, width):
    # `Image.rotate` about the centre `(w / 2, h / 2)`: with `a, b` its rounded
    # cos and sin, `c = (a * -cx + b * -cy + 0) + cx`, `f = (-b * -cx + a * -cy
    # + 0) + cy`, in Python's (float64) order.
    cos, sin = values[:, 0], values[:, 1]
    cx, cy = width / 2.0, height / 2.0
    c = (cos * -cx + sin * -cy + 0.0) + cx
    f = (-sin * -cx + cos * -cy + 0.0) + cy
    return affine_coefficients(cos, sin, c, -sin, cos, f)


def _shear_x(values, height, width):
    one, zero = tf.ones_like(values[:, 0]), tf.zeros_like(values[:, 0])
    return affine_coefficients(one, values[:, 0], zero, zero, one, zero)


def _shear_y(values, height, width):
    one, zero = tf.ones_like(values[:, 0]), tf.zeros_like(values[:, 0])
    return affine_coefficients(one, zero, zero, values[:, 0], one, zero)


def _translate_x(values, height, width):
    one, zero = tf.ones_like(values[:, 0]), tf.zeros_like(values[:, 0])
    return affine_coefficients(one, zero, values[:, 0], zero, one, zero)


def _translate_y(values, height, width):
    one, zero = tf.ones_like(values[:, 0]), tf.zeros_like(values[:, 0])
    return affine_coefficients(one, zero, zero, zero, one, values[:, 0])


OPS = (
    Op("identity", "identity", _no_params),
    Op("auto_contrast", "auto_contrast", _no_params),
    Op("brightness", "brightness", _first_value_float32),
    Op("color", "color", _first_value_float32),
    Op("contrast", "contrast", _first_value_float32),
    Op("equalize", "equalize", _no_params),
    Op("posterize", "posterize", _bits),
    Op("sharpness", "sharpness", _first_value_float32),
    Op("solarize", "solarize", _threshold),
    Op("invert", "invert", _no_params),
    Op("cutout", "cutout", _cutout_box),
    Op("rotate", "warp", _rotate),
    Op("shear_x", "shift_rows", _shear_x),
    Op("shear_y", "warp", _shear_y),
    Op("translate_x", "shift_rows", _translate_x),
    Op("translate_y", "shift_rows", _translate_y),
)
OP_INDEX = {op.name: i for i, op in enumerate(OPS)}
_KERNEL_OF_OP = [KERNEL_NAMES.index(op.kernel) for op in OPS]


def rotation_values(degrees):
    """`(cos, sin)` of `Image.rotate(degrees)`, computed as Pillow does (Python).

    `angle = -radians(degrees % 360)`, each of cos and sin rounded to 15
    decimals. The result is a `rotate` op's values (columns 0 and 1).
    """
    angle = -math.radians(degrees % 360.0)
    return round(math.cos(angle), 15), round(math.sin(angle), 15)


def op_ids(names):
    """Registry indices of op names (a `ValueError` names an unknown one)."""
    unknown = [name for name in names if name not in OP_INDEX]
    if unknown:
        raise ValueError(
            f"Unknown op name(s) {unknown}. Known ops: {sorted(OP_INDEX)}"
        )
    return [OP_INDEX[name] for name in names]


def kernel_parameters(ops, values, height, width):
    """Kernel ids (int32 `[n]`) and parameters (float64 `[n, NUM_PARAMS]`) of
    op ids `ops` (int32 `[n]`) with their `values` (float64 `[n, NUM_VALUES]`)."""
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    params = tf.zeros([tf.shape(ops)[0], NUM_PARAMS], tf.float64)
    for index, op in enumerate(OPS):
        if op.params is _no_params:
            continue
        params = tf.where((ops == index)[:, None], op.params(values, height, width), params)
    kernels = tf.gather(tf.constant(_KERNEL_OF_OP, tf.int32), ops)
    return kernels, params


# ---------------------------------------------------------------------------
# Running a program of ops.


def apply_ops(images, ops, apply, values, clip=True, jit_compile=True, dtype=None):
    """Runs `steps` ops per image on `images` `[B, H, W, C]` on the 0-255 scale.

    Args:
        images: `[B, H, W, C]`, C in {1, 3}: uint8, or any real dtype holding
            values on the 0-255 scale (rounded and clipped to uint8 first).
        ops: int32 `[B, steps]`, indices into `OPS`.
        apply: bool `[B, steps]`; a step not applied is skipped.
        values: float64 `[B, steps, NUM_VALUES]`, the ops' values.
        clip: whether any blend factor may exceed 1. Defaults to `True`
            (always correct; `False` skips a clipping pass).
        jit_compile: one XLA program looping over images (`True`), or the
            vectorised graph path (`False`). Same bits.
        dtype: dtype of the result (0-255 scale). Defaults to the dtype of
            `images`.

    Returns:
        The images, the shape of `images`, in `dtype`. The XLA path converts
        each image to uint8 inside its loop and the uint8 batch to `dtype` in
        one pass at the end.

    Raises:
        ValueError: `images` do not have 1 or 3 channels.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            "`images` must be [B, H, W, C] with C in {1, 3}. Received: "
            f"images.shape={images.shape}"
        )
    dtype = tf.as_dtype(dtype or images.dtype)
    ops = tf.convert_to_tensor(ops, tf.int32)
    apply = tf.convert_to_tensor(apply, tf.bool)
    values = tf.convert_to_tensor(values, tf.float64)
    shape = tf.shape(images)
    steps = ops.shape[1]
    kernels, params = kernel_parameters(
        tf.reshape(ops, [-1]), tf.reshape(values, [-1, NUM_VALUES]), shape[1], shape[2]
    )
    kernels = tf.reshape(kernels, [-1, steps])
    params = tf.reshape(params, [-1, steps, NUM_PARAMS])
    if jit_compile:
        # The applied steps first (stable), so each image loops over its own
        # applied steps only.
        order = tf.argsort(tf.cast(~apply, tf.int32), axis=1, stable=True)
        kernels = tf.gather(kernels, order, batch_dims=1)
        params = tf.gather(params, order, batch_dims=1)
        counts = tf.reduce_sum(tf.cast(apply, tf.int32), axis=1)
        out = _image_utils.unless_empty(
            lambda x: _apply_per_image(x, kernels, counts, params, clip, dtype),
            images,
            empty=lambda x: tf.cast(x, dtype),
        )
        out.set_shape(images.shape)
        return out
    x = _image_utils.to_uint8(images, (0, 255))
    kernels = tf.where(apply, kernels, 0)
    static_shape = x.shape
    for step in range(steps):
        x = _apply_step(x, kernels[:, step], params[:, step], clip)
        x.set_shape(static_shape)
    return _image_utils.from_uint8(x, (0, 255), dtype)


def _apply_step(images, kernels, params, clip):
    """One step of the graph path: the batch partitioned by kernel."""
    n = len(KERNEL_NAMES)
    indices = tf.dynamic_partition(tf.range(tf.shape(images)[0]), kernels, n)
    parts = tf.dynamic_partition(images, kernels, n)
    part_params = tf.dynamic_partition(params, kernels, n)
    outputs = [
        KERNELS[name](part, p, clip)
        for name, part, p in zip(KERNEL_NAMES, parts, part_params)
    ]
    return tf.dynamic_stitch(indices, outputs)


@tf.function(jit_compile=True, autograph=False)
def _apply_per_image(images, kernels, counts, params, clip, dtype):
    """All steps of all images in one XLA program: a loop over images and, per
    image, over its `counts[i]` applied steps with a conditional per step, so
    each image computes only its ops. Each image is converted to uint8 at the
    start of its iteration; the loop writes a uint8 batch and one fused cast
    at the end gives `dtype` (writing float32 images inside the loop cost a
    zeroed float32 batch and a copy per image: 1.5x slower at 224 px).
    `clip` and `dtype` are Python values (one program per value)."""
    branches = [XLA_KERNELS[name] for name in KERNEL_NAMES]

    def per_image(i, out):
        def per_step(s, image):
            batch, p = image[None], params[i, s][None]
            result = tf.switch_case(
                kernels[i, s], [lambda fn=fn: fn(batch, p, clip) for fn in branches]
            )[0]
            # Unknown height/width (tf.data): keep the loop variable's static shape.
            return s + 1, tf.ensure_shape(result, image.shape)

        first = _image_utils.to_uint8(images[i], (0, 255))
        _, image = tf.while_loop(lambda s, _: s < counts[i], per_step, (tf.constant(0), first))
        return i + 1, tf.tensor_scatter_nd_update(out, [[i]], image[None])

    _, out = tf.while_loop(
        lambda i, _: i < tf.shape(images)[0],
        per_image,
        (tf.constant(0), tf.zeros(tf.shape(images), tf.uint8)),
    )
    return tf.cast(out, dtype)
