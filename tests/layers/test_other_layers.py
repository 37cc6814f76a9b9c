"""RandomResizedCrop, ImCLRPairing, MixCoMixing, blur, RandomApply, MultiView, pipelines."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import layers as L
from tests import harness


def _images(n=4, h=8, w=10, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, c)).astype("float32")


# ---------------------------------------------------------- RandomResizedCrop


def _bilinear_ref(img, box, oh, ow):
    top, left, h, w = box
    out = np.zeros((oh, ow, img.shape[2]))
    for i in range(oh):
        for j in range(ow):
            y = top + (i * (h - 1) / (oh - 1) if oh > 1 else (h - 1) / 2)
            x = left + (j * (w - 1) / (ow - 1) if ow > 1 else (w - 1) / 2)
            y0, x0 = int(np.floor(y)), int(np.floor(x))
            y1, x1 = min(y0 + 1, img.shape[0] - 1), min(x0 + 1, img.shape[1] - 1)
            dy, dx = y - y0, x - x0
            out[i, j] = (
                img[y0, x0] * (1 - dy) * (1 - dx)
                + img[y0, x1] * (1 - dy) * dx
                + img[y1, x0] * dy * (1 - dx)
                + img[y1, x1] * dy * dx
            )
    return out


def test_crop_pixels_for_fixed_boxes():
    images = _images()
    boxes = np.array([[0, 0, 8, 10], [2, 3, 4, 5], [1, 0, 7, 6], [5, 7, 3, 3]], "int32")
    layer = L.RandomResizedCrop(6, 5)
    out = np.asarray(layer.transform_images(images, {"crop_boxes": boxes}))
    for i in range(4):
        np.testing.assert_allclose(out[i], _bilinear_ref(images[i], boxes[i], 6, 5), atol=1e-3)


def test_crop_boxes_follow_torchvision():
    layer = L.RandomResizedCrop(4, 4, scale=(0.2, 0.5), seed=1)
    boxes = np.asarray(layer.get_random_transformation(np.zeros((3000, 20, 30, 3)))["crop_boxes"])
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 20).all() and (left + w <= 30).all()
    area = h * w / 600.0
    assert area.min() > 0.15 and area.max() < 0.56
    ratio = w / h
    assert np.percentile(ratio, 5) > 0.6 and np.percentile(ratio, 95) < 1.6
    assert len(np.unique(top)) > 5 and len(np.unique(left)) > 5


def test_crop_fallback_is_centre_crop():
    # Impossible scale for a 1-pixel-high image: every try fails.
    boxes = L.random_resized_crop.crop_boxes_from_uniforms(
        tf.fill([2, 10], 0.5), tf.fill([2, 10], 0.5), tf.fill([2, 10, 2], 0.5),
        4, 40, (0.9, 1.0), (0.75, 4 / 3),
    )
    # in_ratio 10 > 4/3: h = 4, w = round(4 * 4/3) = 5, centred.
    np.testing.assert_array_equal(boxes, [[0, 17, 4, 5]] * 2)


def test_crop_plumbing(tmp_path):
    images = _images()
    eager = L.RandomResizedCrop(5, 5, seed=3)(images)
    ds = tf.data.Dataset.from_tensors(images).map(L.RandomResizedCrop(5, 5, seed=3))
    np.testing.assert_allclose(next(iter(ds)), eager, atol=1e-4)
    single = next(iter(tf.data.Dataset.from_tensors(images[0]).map(L.RandomResizedCrop(5, 5, seed=3))))
    assert single.shape == (5, 5, 3)
    full = L.RandomResizedCrop(4, 5)(images, training=False)
    np.testing.assert_allclose(full[0], _bilinear_ref(images[0], (0, 0, 8, 10), 4, 5), atol=1e-3)
    harness.assert_config_round_trip(L.RandomResizedCrop(5, 6, scale=(0.3, 0.9), seed=1))
    inputs = keras.Input((8, 10, 3))
    model = keras.Model(inputs, L.RandomResizedCrop(5, 5, seed=3)(inputs))
    np.testing.assert_allclose(model(images), eager, atol=1e-4)
    harness.assert_keras_round_trip(
        keras.Model(inputs, L.RandomResizedCrop(5, 5)(inputs, training=False)), images, tmp_path
    )
    u8 = L.RandomResizedCrop(5, 5, seed=3)(images.astype("uint8"))
    np.testing.assert_allclose(u8, eager, atol=1e-4)
    with pytest.raises(ValueError, match="scale"):
        L.RandomResizedCrop(4, 4, scale=(0.5, 0.1))
    with pytest.raises(ValueError, match="height"):
        L.RandomResizedCrop(0, 4)


# --------------------------------------------------------------- ImCLRPairing


def test_imclr_pixels_and_labels_fixed_partners():
    images = _images()
    labels = np.array([0, 2, 1, 2])
    partners = np.array([2, 0, 3, 1], "int32")
    for axis, np_axis in (("width", 1), ("height", 0), ("channels", 2)):
        layer = L.ImCLRPairing(axis=axis, num_classes=3)
        out = np.asarray(layer.transform_images(images, {"partners": partners}))
        lab = np.asarray(layer.transform_labels(labels, {"partners": partners}))
        for i in range(4):
            np.testing.assert_array_equal(
                out[i], np.concatenate([images[i], images[partners[i]]], axis=np_axis)
            )
            ref = np.zeros(3)
            ref[labels[i]] += 0.5
            ref[labels[partners[i]]] += 0.5
            np.testing.assert_allclose(lab[i], ref)


def test_imclr_partner_is_permutation_and_inference():
    layer = L.ImCLRPairing(num_classes=5, seed=0)
    seen_non_identity = False
    for _ in range(5):
        p = np.asarray(layer.get_random_transformation(np.zeros((64, 2, 2, 1)))["partners"])
        np.testing.assert_array_equal(np.sort(p), np.arange(64))
        seen_non_identity |= (p != np.arange(64)).any()
    assert seen_non_identity
    images, labels = _images(), np.array([0, 1, 2, 3])
    out = layer({"images": images, "labels": labels}, training=False)
    np.testing.assert_array_equal(out["images"], np.concatenate([images, images], 2))
    np.testing.assert_array_equal(out["labels"], labels)


def test_imclr_same_class_probability():
    labels = np.repeat(np.arange(8), 8)  # 8 classes of 8.
    data = {"images": np.zeros((64, 2, 2, 1)), "labels": np.eye(8)[labels]}
    for p in (0.0, 0.5, 1.0):
        layer = L.ImCLRPairing(same_class_probability=p, seed=1)
        share = np.mean([
            np.mean(labels[np.asarray(layer.get_random_transformation(data)["partners"])] == labels)
            for _ in range(20)
        ])
        # Random partners land in the same class 1/8 of the time (self included).
        expected = p + (1 - p) / 8
        assert abs(share - expected) < 0.05, (p, share)
    # p=1: partner is never the image itself.
    p1 = np.asarray(L.ImCLRPairing(same_class_probability=1.0, seed=2).get_random_transformation(data)["partners"])
    assert (p1 != np.arange(64)).all()


def test_imclr_plumbing_and_errors(tmp_path):
    images, labels = _images(), np.array([0, 1, 2, 1])
    eager = L.ImCLRPairing(num_classes=3, seed=5)({"images": images, "labels": labels})
    ds = tf.data.Dataset.from_tensors({"images": images, "labels": labels}).map(
        L.ImCLRPairing(num_classes=3, seed=5)
    )
    got = next(iter(ds))
    np.testing.assert_array_equal(got["images"], eager["images"])
    np.testing.assert_allclose(got["labels"], eager["labels"])
    one = next(iter(tf.data.Dataset.from_tensors({"images": images[0], "labels": labels[0]}).map(
        L.ImCLRPairing(num_classes=3, seed=5))))
    assert one["images"].shape == (8, 20, 3) and one["labels"].shape == (3,)
    harness.assert_config_round_trip(L.ImCLRPairing(axis="height", num_classes=3, same_class_probability=0.3, seed=1))
    # Serving model: plain images in, self-paired out.
    inputs = keras.Input((8, 10, 3))
    serving = keras.Model(inputs, L.ImCLRPairing()(inputs, training=False))
    harness.assert_keras_round_trip(serving, images, tmp_path)
    assert serving(images).shape == (4, 8, 20, 3)
    with pytest.raises(ValueError, match="num_classes"):
        L.ImCLRPairing()({"images": images, "labels": labels})
    with pytest.raises(ValueError, match="axis"):
        L.ImCLRPairing(axis="depth")
    with pytest.raises(ValueError, match="same_class_probability"):
        L.ImCLRPairing(same_class_probability=1.5)
    with pytest.raises(ValueError, match="rank"):
        L.ImCLRPairing()(np.zeros((2, 3)))


# ---------------------------------------------------------------- MixCoMixing


def test_mixco_fixed_weights():
    images = _images(6)
    lam = np.array([0.2, 0.5, 0.9], "float32")
    out = np.asarray(L.MixCoMixing().transform_images(images, {"mix_weights": lam}))
    for i in range(3):
        np.testing.assert_allclose(out[i], lam[i] * images[i] + (1 - lam[i]) * images[i + 3], rtol=1e-6)


def test_mixco_weights_uniform_and_plumbing(tmp_path):
    layer = L.MixCoMixing(seed=0)
    lam = np.asarray(layer({"images": np.zeros((8000, 1, 1, 1))})["mix_weights"])
    assert lam.shape == (4000,)
    hist = np.histogram(lam, bins=10, range=(0, 1))[0] / 4000
    np.testing.assert_allclose(hist, 0.1, atol=0.02)
    images = _images(4)
    eager = L.MixCoMixing(seed=3)(images)
    ds = tf.data.Dataset.from_tensors(images).map(L.MixCoMixing(seed=3))
    got = next(iter(ds))
    np.testing.assert_allclose(got["images"], eager["images"], rtol=1e-5)
    np.testing.assert_allclose(got["mix_weights"], eager["mix_weights"])
    inference = L.MixCoMixing(seed=3)(images, training=False)
    np.testing.assert_allclose(inference["images"], 0.5 * (images[:2] + images[2:]))
    harness.assert_config_round_trip(L.MixCoMixing(alpha=0.4, seed=1))
    inputs = keras.Input((8, 10, 3), batch_size=4)
    model = keras.Model(inputs, L.MixCoMixing()(inputs, training=False)["images"])
    harness.assert_keras_round_trip(model, images, tmp_path)
    with pytest.raises(ValueError, match="even"):
        L.MixCoMixing(seed=0)(_images(3))
    with pytest.raises(ValueError, match="alpha"):
        L.MixCoMixing(alpha=0)


# ------------------------------------------- blur, RandomApply, views, pipelines


def test_blur_matches_numpy():
    images = _images(2, 6, 7, 1)
    t = {"sigmas": np.array([0.8, 1.5], "float32"), "apply": np.array([True, False])}
    out = np.asarray(L.PerImageGaussianBlur(kernel_size=5).transform_images(images, t))
    np.testing.assert_array_equal(out[1], images[1])
    k = np.exp(-0.5 * (np.arange(-2, 3) / 0.8) ** 2)
    k /= k.sum()
    padded = np.pad(images[0, ..., 0], 2, mode="reflect")
    ref = np.zeros((6, 7))
    for y in range(6):
        for x in range(7):
            ref[y, x] = sum(k[i] * k[j] * padded[y + i, x + j] for i in range(5) for j in range(5))
    np.testing.assert_allclose(out[0, ..., 0], ref, rtol=1e-4, atol=1e-3)
    harness.assert_config_round_trip(L.PerImageGaussianBlur(rate=0.3, seed=1))


def test_blur_of_tiny_images_known_only_at_run_time_matches_static_shapes():
    """The kernel radius is clamped to the side (reflect padding) also in tf.data."""
    layer = L.PerImageGaussianBlur(kernel_size=7)
    t = {"sigmas": np.array([1.2], "float32"), "apply": np.array([True])}
    images = [_images(1, 3, 9, 3)[0], _images(1, 8, 2, 3)[0], _images(1, 12, 12, 3)[0]]
    dataset = tf.data.Dataset.from_generator(
        lambda: iter(images), output_signature=tf.TensorSpec((None, None, 3), tf.float32)
    ).batch(1).map(lambda x: layer.transform_images(x, t))
    for image, out in zip(images, dataset):
        expected = layer.transform_images(image[None], t)  # static shape: radius clamped
        np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize(
    "make",
    [
        lambda: L.PerImageGaussianBlur(rate=1.0, seed=0),
        lambda: L.weak_pipeline(8, seed=0),
        lambda: L.clsa_strong_pipeline(8, seed=0),
        lambda: L.MultiView([L.weak_pipeline(8, seed=1), L.weak_pipeline(8, seed=2)]),
    ],
    ids=["blur", "weak_pipeline", "clsa_strong_pipeline", "multi_view"],
)
def test_empty_batches_give_empty_outputs(make):
    layer = make()
    empty = np.zeros((0, 16, 16, 3), "float32")
    expected = np.asarray(layer(np.zeros((2, 16, 16, 3), "float32"))).shape
    expected = (0,) + expected[1:]
    assert np.asarray(layer(empty)).shape == expected  # batch size known when traced
    unknown_batch = tf.function(
        layer, input_signature=[tf.TensorSpec((None, 16, 16, 3), tf.float32)]
    )
    assert np.asarray(unknown_batch(empty)).shape == expected  # known when run


def test_random_apply_share():
    layer = L.RandomApply(keras.layers.Lambda(lambda x: x * 0 + 1.0), rate=0.3, seed=0)
    out = np.asarray(layer(np.zeros((4000, 1, 1, 1), "float32")))
    assert abs(out.mean() - 0.3) < 0.03
    with pytest.raises(ValueError, match="rate"):
        L.RandomApply(keras.layers.Identity(), rate=2.0)


def test_multi_view_and_pipelines(tmp_path):
    images = _images(4, 16, 16).astype("uint8")
    views = L.MultiView([L.weak_pipeline(8, seed=1), L.clsa_strong_pipeline(8, seed=2)])
    out = views(images)
    assert out.shape == (4, 2, 8, 8, 3)
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    mixed = L.MultiView([L.weak_pipeline(8, seed=1), L.clsa_strong_pipeline(6, seed=2)])(images)
    assert isinstance(mixed, tuple) and mixed[1].shape == (4, 6, 6, 3)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(2).map(
        L.MultiView([L.weak_pipeline(8, seed=1), L.weak_pipeline(8, seed=2)])
    )
    assert next(iter(ds)).shape == (2, 2, 8, 8, 3)
    clone = L.MultiView.from_config(views.get_config())
    assert len(clone.pipelines) == 2
    with pytest.raises(ValueError, match="pipelines"):
        L.MultiView([])
