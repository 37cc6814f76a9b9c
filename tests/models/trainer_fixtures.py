"""Tiny encoders, heads, trainers and fixed batches for tests/models/test_trainers.py."""

import keras
import numpy as np
import tensorflow as tf

import keras_contrast as kc
from keras_contrast import objectives

BATCH = 8
NUM_CLASSES = 3
WEAK_SIZE = 12
STRONG_SIZE = 8
BASES = ("simclr", "supcon", "supcon_queue", "moco", "byol")
ADD_ONS = ("none", "clsa", "mixco", "both")
BASE_TERM = {
    "simclr": "contrastive_loss",
    "supcon": "contrastive_loss",
    "supcon_queue": "contrastive_loss",
    "moco": "contrastive_loss",
    "byol": "byol_loss",
}
# Non-unit weights, so that a total that ignores (or squares, ...) them is caught.
CLSA_WEIGHT = 2.0
MIXCO_WEIGHT = 0.5
ADD_ON_TERMS = {"none": (), "clsa": ("ddm_loss",), "mixco": ("mixco_loss",)}
ADD_ON_TERMS["both"] = ADD_ON_TERMS["clsa"] + ADD_ON_TERMS["mixco"]
TERM_WEIGHT = {"ddm_loss": CLSA_WEIGHT, "mixco_loss": MIXCO_WEIGHT}


def encoder(batch_norm=True, filters=16):
    """Rescaling(1/255) -> Conv 3x3/2 -> [BatchNorm] -> ReLU -> global average pool.

    Takes any image size (the strong crops are smaller than the weak views).
    """
    layers = [
        keras.Input((None, None, 3)),
        keras.layers.Rescaling(1.0 / 255),
        keras.layers.Conv2D(filters, 3, strides=2),
    ]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D()]
    return keras.Sequential(layers)


def head():
    return kc.models.ProjectionHead(8, hidden_dims=(16,))


def add_ons(kind):
    """The add-on objectives of `kind` ("none", "clsa", "mixco", "both")."""
    made = []
    if kind in ("clsa", "both"):
        made.append(objectives.CLSA(weight=CLSA_WEIGHT))
    if kind in ("mixco", "both"):
        made.append(objectives.MixCo(weight=MIXCO_WEIGHT, temperature=0.5))
    return made


def make_trainer(base, kind="none", batch_norm=True, num_classes=NUM_CLASSES, seed=1, **kwargs):
    """A trainer of `base` with the add-ons of `kind` on a tiny encoder.

    Queued bases hold 16 keys (two batches of 8). MoCo keeps `bn_splits=1`: BatchNorm on
    sub-batches of 4 makes the keys too noisy for a short fit to show learning (tests of
    the split pass `bn_splits=2`). `kwargs` override these defaults.
    """
    common = dict(head=head(), add_ons=add_ons(kind), num_classes=num_classes, seed=seed)
    if base == "simclr":
        options = dict(temperature=0.5)
        cls = kc.models.SimCLRModel
    elif base == "supcon":
        options = dict(loss=kc.losses.SupConLoss(temperature=0.5))
        cls = kc.models.SupConModel
    elif base == "supcon_queue":
        options = dict(
            loss=kc.losses.SupConLoss(temperature=0.5), queue_size=16, momentum=0.9
        )
        cls = kc.models.SupConModel
    elif base == "moco":
        options = dict(queue_size=16, momentum=0.9, temperature=0.2)
        cls = kc.models.MoCoModel
    elif base == "byol":
        options = dict(predictor=head(), momentum=0.9, total_steps=40)
        cls = kc.models.BYOLModel
    else:
        raise ValueError(base)
    options.update(kwargs)
    return cls(encoder(batch_norm=batch_norm), **common, **options)


def images(n=BATCH, seed=0):
    """Distinct images in [0, 255] (before clipping): a colour near their class's colour
    (class `i % 3`), a per-image gradient and a per-image checkerboard contrast.

    The colour and the contrast survive global average pooling, so even a one-layer encoder
    can tell the images (and the classes) apart: every loss can fall and the probe learn.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % NUM_CLASSES
    class_colour = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]], "float64")
    colour = class_colour[labels][:, None, None, :] + rng.uniform(-50, 50, size=(n, 1, 1, 3))
    ramp = np.linspace(-1.0, 1.0, WEAK_SIZE)
    slope = rng.uniform(-60, 60, size=(n, 1, 1, 3))
    gradient = slope * ramp[None, :, None, None] * np.ones((1, 1, WEAK_SIZE, 1))
    # A per-image checkerboard contrast: high-frequency energy that a conv + ReLU + pooling
    # encoder sees (the gradient alone mostly averages out).
    checker = (-1.0) ** np.add.outer(np.arange(WEAK_SIZE), np.arange(WEAK_SIZE))
    contrast = rng.uniform(0, 60, size=(n, 1, 1, 3))
    return colour + gradient + contrast * checker[None, :, :, None]


def views(n=BATCH, seed=0):
    """A fixed batch `{"query", "key", "strong", "labels"}`: two weak 12x12 views (small
    noise) and a strong 8x8 view (a resized, noisier copy), labels `[0, 1, 2, 0, 1, ...]`."""
    rng = np.random.default_rng(seed + 1)
    base = images(n, seed)

    def noisy(x, scale):
        return np.clip(x + rng.normal(0, scale, size=x.shape), 0, 255).astype("float32")

    strong = tf.image.resize(base, (STRONG_SIZE, STRONG_SIZE)).numpy()
    return {
        "query": noisy(base, 8.0),
        "key": noisy(base, 8.0),
        "strong": noisy(strong, 20.0),
        "labels": (np.arange(n) % NUM_CLASSES).astype("int32"),
    }


def dataset(batch_views, batch_size=BATCH):
    return tf.data.Dataset.from_tensor_slices(batch_views).batch(batch_size, drop_remainder=True)
