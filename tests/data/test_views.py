"""ViewMaker: output format, tf.data use, seeding, CLSA crops, errors, view independence."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import data
from keras_contrast import layers as L
from keras_contrast.data import ViewMaker

# CLSA's ImageNet multi-crop (Wang & Qi, 2021): sides and area scales.
PAPER_SIDES = (224, 192, 160, 128, 96)
PAPER_SCALES = ((0.2, 1.0), (0.172, 0.86), (0.143, 0.715), (0.114, 0.571), (0.086, 0.429))


def _images(n=3, side=24, dtype="uint8", seed=0):
    values = np.random.default_rng(seed).integers(0, 256, (n, side, side, 3))
    return values.astype(dtype)


def _numpy(views):
    return {k: [np.asarray(t) for t in v] if isinstance(v, tuple) else np.asarray(v)
            for k, v in views.items()}


# ---------------------------------------------------------------- output format


@pytest.mark.parametrize(
    "kind, strong_sides", [(None, None), ("single", (8,)), ("multi", (16, 14, 11, 9, 8))]
)
def test_output_keys_shapes_dtypes(kind, strong_sides):
    crops = () if kind is None else ViewMaker.clsa_crops(16, kind)
    maker = ViewMaker(16, strong_crops=crops, seed=0)
    # Float input once per pipeline kind: each new input signature retraces StrongAugment.
    for dtype in ("uint8",) if kind == "multi" else ("uint8", "float32"):
        views = maker(_images(3, 24, dtype))
        assert isinstance(views, dict)
        expected_keys = {"query", "key"} | ({"strong"} if strong_sides else set())
        assert set(views) == expected_keys
        for name in ("query", "key"):
            assert views[name].shape == (3, 16, 16, 3) and views[name].dtype == tf.float32
        if strong_sides is None:
            continue
        strong = views["strong"]
        if len(strong_sides) == 1:
            assert tf.is_tensor(strong)
            strong = (strong,)
        else:
            assert isinstance(strong, tuple) and len(strong) == len(strong_sides)
        for crop, side in zip(strong, strong_sides):
            assert crop.shape == (3, side, side, 3) and crop.dtype == tf.float32
        for tensor in [views["query"], views["key"], *strong]:
            values = np.asarray(tensor)
            assert np.isfinite(values).all() and values.min() >= 0 and values.max() <= 255


def test_value_range_and_no_blur():
    maker = ViewMaker(8, blur=False, value_range=(0, 1), seed=1)
    views = maker(_images(4, 12, "float32") / 255.0)
    for name in ("query", "key"):
        values = np.asarray(views[name])
        assert values.min() >= 0 and values.max() <= 1 and values.std() > 0
    for pipeline in (maker.query_pipeline, maker.key_pipeline):
        assert not any(isinstance(x, L.PerImageGaussianBlur) for x in pipeline.layers)
    assert any(isinstance(x, L.PerImageGaussianBlur) for x in ViewMaker(8).key_pipeline.layers)


def test_pipelines_attributes():
    maker = ViewMaker(16, strong_crops=ViewMaker.clsa_crops(16, "multi"), seed=0)
    assert isinstance(maker.query_pipeline, keras.Sequential)
    assert isinstance(maker.key_pipeline, keras.Sequential)
    assert isinstance(maker.strong_pipelines, list) and len(maker.strong_pipelines) == 5
    sides = [p.layers[0].height for p in maker.strong_pipelines]
    assert sides == [16, 14, 11, 9, 8]
    assert all(isinstance(p.layers[-1], L.StrongAugment) for p in maker.strong_pipelines)
    assert ViewMaker(16).strong_pipelines == []


def test_inside_build_pipeline_on_cifar10_sample():
    source, _ = data.cifar10_sample("train")
    # Two of the five CLSA crops: each strong pipeline costs seconds of tracing in tf.data.
    crops = ViewMaker.clsa_crops(32, "multi")[:2]
    maker = ViewMaker(32, strong_crops=crops, blur=False, seed=0)
    train = data.build_pipeline(
        source, batch_size=8, view_fn=maker, view_fn_batched=True, shuffle_buffer=64, seed=0
    )
    batches = list(train.take(3))
    assert len(batches) == 3
    for views, labels in batches:
        assert set(views) == {"query", "key", "strong"}
        assert views["query"].shape == views["key"].shape == (8, 32, 32, 3)
        assert views["query"].dtype == tf.float32
        # A tuple survives tf.data (a list would have been stacked, which fails here).
        assert isinstance(views["strong"], tuple)
        assert [tuple(c.shape) for c in views["strong"]] == [(8, 32, 32, 3), (8, 27, 27, 3)]
        assert labels.shape == (8,) and labels.dtype == tf.int32
        assert not np.array_equal(views["query"], views["key"])


# ---------------------------------------------------------------- seeding


def test_same_seed_same_views():
    crops = ViewMaker.clsa_crops(16, "multi")[1:2]
    images = _images(4, 24)
    first = _numpy(ViewMaker(16, strong_crops=crops, seed=5)(images))
    second = _numpy(ViewMaker(16, strong_crops=crops, seed=5)(images))
    for name in ("query", "key"):
        np.testing.assert_array_equal(first[name], second[name])
    np.testing.assert_array_equal(first["strong"], second["strong"])
    other = _numpy(ViewMaker(16, seed=6)(images))
    assert not np.array_equal(first["query"], other["query"])
    assert not np.array_equal(first["query"], first["key"])


def test_weak_crops_make_the_query_a_tuple_and_keep_the_other_seeds():
    multi = ViewMaker.clsa_crops(16, "multi")
    images = _images(3, 24)
    maker = ViewMaker(16, strong_crops=multi[3:], weak_crops=multi[1:], seed=2)
    raw = maker(images)
    assert isinstance(raw["query"], tuple)  # a tuple survives tf.data; a list is stacked
    views = _numpy(raw)
    query = views["query"]
    assert [q.shape for q in query] == [
        (3, 16, 16, 3), (3, 14, 14, 3), (3, 11, 11, 3), (3, 9, 9, 3), (3, 8, 8, 3)]
    crops = [(p.layers[0].height, tuple(p.layers[0].scale)) for p in maker.weak_crop_pipelines]
    assert crops == [(14, (0.172, 0.86)), (11, (0.143, 0.715)), (9, (0.114, 0.571)),
                     (8, (0.086, 0.429))]
    # Weak crops are weak views: no StrongAugment.
    assert not any(isinstance(x, L.StrongAugment)
                   for p in maker.weak_crop_pipelines for x in p.layers)
    # The query, key and strong views are those of the maker without weak crops.
    plain = _numpy(ViewMaker(16, strong_crops=multi[3:], seed=2)(images))
    np.testing.assert_array_equal(query[0], plain["query"])
    np.testing.assert_array_equal(views["key"], plain["key"])
    for a, b in zip(views["strong"], plain["strong"]):
        np.testing.assert_array_equal(a, b)
    # The weak 8-px crop and the strong 8-px crop are independent draws.
    assert not np.array_equal(query[4], views["strong"][1])
    assert ViewMaker(16).weak_crop_pipelines == []


def test_config_round_trip():
    maker = ViewMaker(
        12, strong_crops=[(10, (0.3, 0.9))], blur=False, scale=(0.3, 1.0), seed=4,
        weak_crops=[(8, (0.2, 0.5))],
    )
    config = maker.get_config()
    assert set(config) == set(inspect.signature(ViewMaker.__init__).parameters) - {"self"}
    assert config["strong_crops"] == ((10, (0.3, 0.9)),)
    assert config["weak_crops"] == ((8, (0.2, 0.5)),)
    assert config["size"] == 12 and config["blur"] is False and config["seed"] == 4
    clone = ViewMaker.from_config(config)
    images = _images(2, 16)
    a, b = _numpy(maker(images)), _numpy(clone(images))
    for name in ("key", "strong"):
        np.testing.assert_array_equal(a[name], b[name])
    for x, y in zip(a["query"], b["query"], strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- CLSA crops


def test_clsa_crops():
    # CLSA's single-crop run: a 96-px strong crop of 224 with scale (0.086, 0.429).
    assert ViewMaker.clsa_crops(224, "single") == ((96, (0.086, 0.429)),)
    assert ViewMaker.clsa_crops(32, "single") == ((14, (0.086, 0.429)),)
    assert ViewMaker.clsa_crops(16, "single") == ((8, (0.086, 0.429)),)
    assert ViewMaker.clsa_crops(224, "multi") == tuple(zip(PAPER_SIDES, PAPER_SCALES))
    # 32 * (224, 192, 160, 128, 96) / 224 = 32, 27.4, 22.9, 18.3, 13.7.
    assert ViewMaker.clsa_crops(32, "multi") == tuple(zip((32, 27, 23, 18, 14), PAPER_SCALES))
    # 16 * 96 / 224 = 6.9 is raised to the minimum side 8.
    assert [s for s, _ in ViewMaker.clsa_crops(16, "multi")] == [16, 14, 11, 9, 8]
    with pytest.raises(ValueError, match="`kind` must be one of .* Received: kind='double'"):
        ViewMaker.clsa_crops(32, "double")
    with pytest.raises(ValueError, match="`size` must be an int >= 1. Received: size=0"):
        ViewMaker.clsa_crops(0, "single")


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("size", [0, -3, True, 2.5, "16", None])
def test_bad_size(size):
    with pytest.raises(ValueError, match="`size` must be an int >= 1. Received: size="):
        ViewMaker(size)


@pytest.mark.parametrize(
    "strong_crops",
    [
        5,
        [8],
        [(8,)],
        [(0, (0.2, 1.0))],
        [(8.0, (0.2, 1.0))],
        [(8, (0.0, 1.0))],
        [(8, (0.5, 0.2))],
        [(8, (0.2, 1.5))],
        [(8, 0.5)],
        [(16, (0.2, 1.0)), (8, (0.2, "1"))],
    ],
)
def test_bad_strong_crops(strong_crops):
    with pytest.raises(ValueError, match=r"`strong_crops` must be .* Received: strong_crops="):
        ViewMaker(16, strong_crops=strong_crops)
    with pytest.raises(ValueError, match=r"`weak_crops` must be .* Received: weak_crops="):
        ViewMaker(16, weak_crops=strong_crops)


def test_other_errors():
    with pytest.raises(ValueError, match=r"`seed` must be None or an int >= 0. Received: seed=-1"):
        ViewMaker(16, seed=-1)
    with pytest.raises(ValueError, match="`blur` must be True or False. Received: blur='yes'"):
        ViewMaker(16, blur="yes")
    with pytest.raises(ValueError, match="scale"):
        ViewMaker(16, scale=(0.8, 0.2))
    with pytest.raises(ValueError, match=r"`images` must be a batch .* images.shape=\(24, 24, 3\)"):
        ViewMaker(16)(_images(1, 24)[0])


# ---------------------------------------------------------------- independence of views

DRAWS = 2000
MAX_CORRELATION = 0.1  # |Pearson r| of independent draws: std 1 / sqrt(2000) = 0.022.


def _first(pipeline, kind):
    matches = [x for x in pipeline.layers if isinstance(x, kind)]
    assert len(matches) == 1, (kind, pipeline.layers)
    return matches[0]


def _random_decisions(pipeline, images):
    """Every random quantity a weak pipeline draws for `images`, one value per image."""
    flat = lambda t: np.asarray(t, dtype="float64").reshape(len(images))  # noqa: E731
    out = {}
    boxes = np.asarray(
        _first(pipeline, L.RandomResizedCrop).get_random_transformation(images)["crop_boxes"]
    )
    for i, name in enumerate(("crop_top", "crop_left", "crop_height", "crop_width")):
        out[name] = boxes[:, i].astype("float64")
    apply = _first(pipeline, L.RandomApply)
    jitter = apply.layer
    jitter_draws = jitter.get_random_transformation(images)
    for name in ("brightness", "contrast", "saturation", "hue"):
        out[f"jitter_{name}"] = flat(jitter_draws[f"{name}_factor"])
    out["jitter_first_op"] = flat(jitter_draws["order"][:, 0])
    # RandomApply draws its decision inside `call`: an image was jittered iff it changed.
    changed = np.asarray(apply(images, training=True)) != images
    out["jitter_applied"] = changed.reshape(len(images), -1).any(axis=1).astype("float64")
    out["grayscale"] = flat(
        _first(pipeline, keras.layers.RandomGrayscale).get_random_transformation(images))
    blur = _first(pipeline, L.PerImageGaussianBlur).get_random_transformation(images)
    out["blur_sigma"] = flat(blur["sigmas"])
    out["blur_applied"] = flat(blur["apply"])
    out["flip"] = flat(
        _first(pipeline, keras.layers.RandomFlip).get_random_transformation(images)["flips"])
    return out


def max_cross_correlation(pipeline_a, pipeline_b, draws=DRAWS):
    """Largest |Pearson r| between any random decision of `a` and any of `b`.

    Returns `(r, name_a, name_b)` over the `draws` images of one batch.
    """
    images = _images(draws, 32, "float32", seed=1)
    a = _random_decisions(pipeline_a, images)
    b = _random_decisions(pipeline_b, images)
    for name, values in [*a.items(), *b.items()]:
        assert values.std() > 0, name  # A constant would make r undefined.
    r = np.corrcoef(np.stack([*a.values(), *b.values()]))[: len(a), len(a):]
    i, j = np.unravel_index(np.argmax(np.abs(r)), r.shape)
    return abs(r[i, j]), list(a)[i], list(b)[j]


def test_views_of_one_image_are_independent():
    # Every decision of one view against every decision of the other, not only crop vs
    # crop: with the old `seed + i` layer seeds (views seeded s and s + 1), same-type pairs
    # were uncorrelated but the query's flip used the key's blur seed (r = -0.87).
    maker = ViewMaker(size=16, strong_crops=ViewMaker.clsa_crops(16, "single"), seed=0)
    pairs = {
        "query/key": (maker.query_pipeline, maker.key_pipeline),
        "query/strong": (maker.query_pipeline, maker.strong_pipelines[0]),
        "key/strong": (maker.key_pipeline, maker.strong_pipelines[0]),
    }
    for pair, (a, b) in pairs.items():
        r, name_a, name_b = max_cross_correlation(a, b)
        assert r < MAX_CORRELATION, (pair, name_a, name_b, r)


def test_correlation_check_detects_shared_generators():
    # Control: two pipelines with the same seed draw the same numbers, r = 1.
    r, name_a, name_b = max_cross_correlation(L.weak_pipeline(16, seed=0),
                                              L.weak_pipeline(16, seed=0), draws=500)
    assert r > 0.99
