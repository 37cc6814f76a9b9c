"""Robustness evaluation: accuracy under the common corruptions of ImageNet-C / CIFAR-10-C.

`corruption_accuracy(model, images, labels)` corrupts held-out images on the fly with the
`imagecorruptions` corruption set (Hendrycks & Dietterich, 2019) and measures the accuracy of
`model` at every (corruption, severity):

```python
import keras_contrast

images, labels, _ = keras_contrast.data.cifar10_sample_arrays("validation")
result = keras_contrast.evaluation.corruption_accuracy(model, images, labels)
result["gaussian_noise"][3], result["mean"]
```

The corruptions come from the `imagecorruptions-imaug` package (`pip install
"keras-contrast[robustness]"`), a maintained fork of `imagecorruptions` 1.1.2 that runs on
today's scikit-image (the original calls its removed `multichannel` argument). Its severities
are ImageNet-C's; CIFAR-10-C used milder constants for 32-px images, so accuracies on the fly
at 32 px are comparable between models evaluated here, not with published CIFAR-10-C tables.

`cifar10_corrupted_accuracy(model)` reads the published CIFAR-10-C sets instead, as TensorFlow
Datasets prepares them (`cifar10_corrupted`): those figures compare with published tables.
`cifar10_corrupted_prepared()` tells whether they are there.
"""

import hashlib
import json
import numbers
import os

import keras
import numpy as np

from keras_contrast.models.trainer import check_int

# The 15 corruptions of the ImageNet-C / CIFAR-10-C benchmark (mean corruption accuracy is
# over these), and the 4 extra ones held out for validation in the paper.
COMMON_CORRUPTIONS = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
    "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
    "elastic_transform", "pixelate", "jpeg_compression",
)
EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS = COMMON_CORRUPTIONS + EXTRA_CORRUPTIONS
SEVERITIES = (1, 2, 3, 4, 5)


def _imagecorruptions():
    try:
        import imagecorruptions
    except ImportError as error:
        raise ImportError(
            "Corruptions need the `imagecorruptions-imaug` package: "
            'pip install "keras-contrast[robustness]" (or imagecorruptions-imaug).'
        ) from error
    return imagecorruptions


def _check_corruptions(corruptions):
    if corruptions is None or corruptions == "common":
        return COMMON_CORRUPTIONS
    if corruptions == "all":
        return ALL_CORRUPTIONS
    if isinstance(corruptions, str) or not isinstance(corruptions, (tuple, list)) or not (
        corruptions and all(c in ALL_CORRUPTIONS for c in corruptions)
    ):
        raise ValueError(
            "`corruptions` must be None or 'common' (the 15 of the benchmark), 'all' (with "
            f"the 4 extra ones), or a non-empty list of names from {ALL_CORRUPTIONS}. "
            f"Received: corruptions={corruptions!r}"
        )
    return tuple(corruptions)


def _check_severities(severities):
    if not isinstance(severities, (tuple, list)) or not severities or not all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and 1 <= s <= 5
        for s in severities
    ):
        raise ValueError(
            "`severities` must be a non-empty sequence of ints in [1, 5]. "
            f"Received: severities={severities!r}"
        )
    return tuple(int(s) for s in severities)


def _check_images_and_labels(images, labels, min_side=32):
    images = np.asarray(images)
    labels = np.asarray(labels)
    if (images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3
            or min(images.shape[1:3]) < min_side):
        raise ValueError(
            f"`images` must be uint8 [N, H, W, 3] (RGB, 0-255), H and W >= {min_side}"
            f"{' (the corruptions minimum)' if min_side > 1 else ''}. Received: "
            f"images.dtype={images.dtype}, images.shape={images.shape}"
        )
    if len(images) == 0:
        raise ValueError("`images` must hold at least one image. Received: 0 images")
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(
        labels.dtype, np.integer
    ):
        raise ValueError(
            "`labels` must be int class ids [N], one per image. Received: "
            f"labels.dtype={labels.dtype}, labels.shape={labels.shape} for {len(images)} images"
        )
    return images, labels


# Corruptions that draw from their own generator, seeded per image through a `seed` argument
# (the others draw from NumPy's global one).
_OWN_SEED_CORRUPTIONS = ("impulse_noise", "glass_blur")


def _image_seed(seed, index):
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def corrupt_images(images, corruption, severity, seed=0):
    """Applies one corruption at one severity to every image (NumPy, on the CPU).

    Args:
        images: uint8 `[N, H, W, 3]`.
        corruption: a name from `ALL_CORRUPTIONS` (as `imagecorruptions` spells it).
        severity: an int in `[1, 5]`.
        seed: seed of the random corruptions (noise, glass blur, snow, ...): NumPy's
            global generator is seeded with it before the first image (and restored
            afterwards), impulse noise and glass blur get a seed per image derived from it;
            the same call gives the same images. Defaults to `0`.

    Returns:
        uint8 `[N, H, W, 3]`.
    """
    images, _ = _check_images_and_labels(images, np.zeros(len(np.asarray(images)), np.int32))
    (corruption,) = _check_corruptions([corruption])
    (severity,) = _check_severities([severity])
    corrupt = _imagecorruptions().corrupt
    seeded = corruption in _OWN_SEED_CORRUPTIONS
    state = np.random.get_state()  # the package draws from the global generator
    np.random.seed(seed)
    try:
        out = [
            corrupt(image, corruption_name=corruption, severity=severity,
                    **({"seed": _image_seed(seed, i)} if seeded else {}))
            for i, image in enumerate(images)
        ]
    finally:
        np.random.set_state(state)
    # Some corruptions return float or a resized array on tiny images: back to the input's.
    out = np.stack([np.clip(np.asarray(o, np.float64), 0, 255).round() for o in out])
    if out.shape != images.shape:
        raise RuntimeError(
            f"{corruption} at severity {severity} changed the image shape from "
            f"{images.shape[1:]} to {out.shape[1:]}"
        )
    return out.astype(np.uint8)


def _predict_fn(model, batch_size):
    if isinstance(model, keras.Model):
        return lambda x: model.predict(x, batch_size=batch_size, verbose=0)
    if callable(model):
        return model
    raise ValueError(
        "`model` must be a Keras model or a callable mapping float32 images [B, H, W, 3] "
        f"(0-255) to class probabilities. Received: model={model!r}"
    )


def _accuracy(predict, images, labels, batch_size):
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].astype(np.float32)
        scores = predict(batch)
        if isinstance(scores, dict):
            scores = scores["probabilities"]
        scores = np.asarray(scores)
        if scores.ndim != 2 or scores.shape[0] != len(batch):
            raise ValueError(
                "`model` must return class probabilities [B, classes]. Received an output "
                f"of shape {scores.shape} for a batch of {len(batch)}"
            )
        correct += int(np.sum(np.argmax(scores, axis=-1) == labels[start : start + len(batch)]))
    return correct / len(images)


def accuracy(model, images, labels, batch_size=256):
    """Fraction of `images` whose highest-scoring class under `model` is the label.

    Args:
        model: as for `corruption_accuracy`.
        images: uint8 `[N, H, W, 3]`.
        labels: int `[N]`.
        batch_size: images per model call. Defaults to `256`.

    Returns:
        A float in `[0, 1]`.
    """
    images, labels = _check_images_and_labels(images, labels, min_side=1)
    check_int("batch_size", batch_size)
    return _accuracy(_predict_fn(model, batch_size), images, labels, batch_size)


def _fingerprint(images, labels, seed):
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels.astype(np.int64)).tobytes())
    digest.update(str(seed).encode())
    return digest.hexdigest()[:16]


def _read_cache(cache_path, fingerprint):
    if cache_path is None or not os.path.exists(cache_path):
        return {}
    with open(cache_path) as f:
        cached = json.load(f)
    if cached.get("fingerprint") != fingerprint:
        raise ValueError(
            f"`cache_path` holds results for other images, labels or seed: {cache_path} "
            f"(fingerprint {cached.get('fingerprint')}, these inputs {fingerprint}). Use "
            "one cache file per (model, evaluation set)."
        )
    return cached["accuracy"]


def _write_cache(cache_path, fingerprint, accuracy):
    directory = os.path.dirname(os.path.abspath(cache_path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{cache_path}.tmp{os.getpid()}"
    with open(temporary, "w") as f:
        json.dump({"fingerprint": fingerprint, "accuracy": accuracy}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, cache_path)


def _corrupted_set(images, corruption, severity, seed, corrupted_dir, fingerprint):
    if corrupted_dir is None:
        return corrupt_images(images, corruption, severity, seed=seed)
    path = os.path.join(corrupted_dir, f"{fingerprint}_{corruption}_{severity}.npy")
    if os.path.exists(path):
        corrupted = np.load(path)
        if corrupted.shape == images.shape and corrupted.dtype == np.uint8:
            return corrupted
    corrupted = corrupt_images(images, corruption, severity, seed=seed)
    os.makedirs(corrupted_dir, exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}.npy"
    np.save(temporary, corrupted)
    os.replace(temporary, path)
    return corrupted


def corruption_accuracy(
    model,
    images,
    labels,
    corruptions=None,
    severities=SEVERITIES,
    batch_size=256,
    seed=0,
    cache_path=None,
    corrupted_dir=None,
    verbose=1,
):
    """Accuracy of `model` under each corruption and severity, and their mean.

    Each (corruption, severity) corrupts all `images` (`corrupt_images`, with `seed`) and
    counts the examples whose highest-scoring class is the label. The mean is over every
    (corruption, severity) measured (the benchmark's mean corruption accuracy with the
    defaults).

    Args:
        model: a Keras model, or any callable mapping float32 images `[B, H, W, 3]` on a
            0-255 scale to class probabilities `[B, classes]` (or to a dict with
            `"probabilities"`, as the exported signatures return), e.g.
            `lambda x: served.signatures["serving_default"](images=x)`.
        images: uint8 `[N, H, W, 3]` held-out images.
        labels: int `[N]` class ids.
        corruptions: `None` or `"common"` (the 15 of ImageNet-C / CIFAR-10-C), `"all"` (with
            speckle noise, Gaussian blur, spatter and saturate), or a list of names.
            Defaults to `None`.
        severities: ints in `[1, 5]`. Defaults to `(1, 2, 3, 4, 5)`.
        batch_size: images per model call. Defaults to `256`.
        seed: seed of the random corruptions. Defaults to `0`.
        cache_path: a JSON file where each (corruption, severity) result is stored as soon
            as it is measured and read back on the next call (a long evaluation resumes);
            it refuses other images, labels or seeds. Defaults to `None` (no cache).
        corrupted_dir: a folder where each corrupted set is kept (`.npy`, named by the
            inputs' fingerprint, the corruption and the severity), so that evaluating
            several models on the same images corrupts them once. Defaults to `None`.
        verbose: `1` shows a progress bar over the (corruption, severity) pairs, `0`
            nothing. Defaults to `1`.

    Returns:
        `{corruption: {severity: accuracy}, ..., "mean": float}`, accuracies in `[0, 1]`.
    """
    images, labels = _check_images_and_labels(images, labels)
    corruptions = _check_corruptions(corruptions)
    severities = _check_severities(severities)
    check_int("batch_size", batch_size)
    predict = _predict_fn(model, batch_size)
    _imagecorruptions()  # a clear ImportError before any work
    fingerprint = _fingerprint(images, labels, seed)
    cached = _read_cache(cache_path, fingerprint)

    def measure(corruption, severity):
        key = f"{corruption}/{severity}"
        if key not in cached:
            corrupted = _corrupted_set(images, corruption, severity, seed, corrupted_dir,
                                       fingerprint)
            cached[key] = _accuracy(predict, corrupted, labels, batch_size)
            if cache_path is not None:
                _write_cache(cache_path, fingerprint, cached)
        return cached[key]

    return _accuracy_grid(measure, corruptions, severities, verbose)


def _accuracy_grid(measure, corruptions, severities, verbose):
    """`{corruption: {severity: measure(corruption, severity)}, ..., "mean"}`, with a
    progress bar over the pairs."""
    progress = keras.utils.Progbar(len(corruptions) * len(severities), verbose=verbose,
                                   unit_name="corruption")
    result = {}
    for corruption in corruptions:
        result[corruption] = {}
        for severity in severities:
            result[corruption][severity] = measure(corruption, severity)
            progress.add(1, values=[("accuracy", result[corruption][severity])])
    values = [a for by_severity in result.values() for a in by_severity.values()]
    result["mean"] = float(np.mean(values))
    return result


# imagecorruptions' names of the two corruptions that TFDS' `cifar10_corrupted` spells otherwise.
_CIFAR10_C_NAMES = {"glass_blur": "frosted_glass_blur", "elastic_transform": "elastic"}


def cifar10_corrupted_config(corruption, severity):
    """TFDS name of CIFAR-10-C's set for `(corruption, severity)`, e.g.
    `cifar10_corrupted/frosted_glass_blur_3` for `("glass_blur", 3)`."""
    (corruption,) = _check_corruptions([corruption])
    (severity,) = _check_severities([severity])
    return f"cifar10_corrupted/{_CIFAR10_C_NAMES.get(corruption, corruption)}_{severity}"


def cifar10_corrupted_prepared(corruptions=None, severities=SEVERITIES, data_dir=None):
    """Whether TFDS' `cifar10_corrupted` is prepared in `data_dir` (TFDS' default when
    `None`) for every corruption and severity asked (arguments as `corruption_accuracy`)."""
    configs = [cifar10_corrupted_config(c, s) for c in _check_corruptions(corruptions)
               for s in _check_severities(severities)]
    return not _unprepared(configs, data_dir)


def evenly_spaced(count, max_images):
    """Indices of at most `max_images` of `count` examples, evenly spaced, in order (all of
    them when `max_images` is `None` or 0)."""
    check_int("max_images", max_images, minimum=0, allow_none=True)
    if not max_images or count <= max_images:
        return np.arange(count)
    return np.linspace(0, count - 1, max_images).round().astype(int)


def _unprepared(configs, data_dir):
    """The TFDS `configs` not prepared in `data_dir`."""
    import tensorflow_datasets as tfds  # Imported lazily: slow, and only needed here.

    return [c for c in configs if not tfds.builder(c, data_dir=data_dir).is_prepared()]


def _check_cifar10_corrupted_prepared(configs, data_dir):
    missing = _unprepared(configs, data_dir)
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise ValueError(
            f"TFDS' {', '.join(missing[:3])}{more}: not prepared in data_dir={data_dir!r} "
            f"({len(missing)} of the {len(configs)} sets asked). Prepare each with `tfds build "
            f"{missing[0]} --data_dir=DIR` (it downloads CIFAR-10-C), or measure corruptions "
            "on the fly with `corruption_accuracy`."
        )


def _read_cifar10_corrupted(config, data_dir, max_images):
    import tensorflow_datasets as tfds

    data = tfds.load(config, split="test", data_dir=data_dir, download=False,
                     as_supervised=True)
    batches = list(data.batch(1024).as_numpy_iterator())
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    keep = evenly_spaced(len(images), max_images)
    return images[keep], labels[keep].astype(np.int32)


def cifar10_corrupted_accuracy(
    model,
    corruptions=None,
    severities=SEVERITIES,
    data_dir=None,
    max_images=None,
    batch_size=256,
    verbose=1,
):
    """Accuracy of `model` on the published CIFAR-10-C sets, read through TFDS.

    Each (corruption, severity) is the `test` split of TFDS' `cifar10_corrupted/<name>_<s>`
    (`cifar10_corrupted_config`: the 10,000 CIFAR-10 test images corrupted by Hendrycks &
    Dietterich with CIFAR-10-C's constants), read, not made; so the figures compare with
    published CIFAR-10-C tables, unlike `corruption_accuracy`'s on-the-fly corruptions.

    Args:
        model: as for `corruption_accuracy` (32 x 32 inputs).
        corruptions: as for `corruption_accuracy`: the 15 common ones by default,
            `"all"` adds the 4 extra ones (TFDS has all 19).
        severities: ints in `[1, 5]`. Defaults to `(1, 2, 3, 4, 5)`.
        data_dir: where TFDS keeps its prepared data. Defaults to `None` (TFDS' default).
        max_images: at most this many images of each set, evenly spaced in its order (the
            same images in every set). Defaults to `None` (all 10,000).
        batch_size: images per model call. Defaults to `256`.
        verbose: `1` shows a progress bar, `0` nothing. Defaults to `1`.

    Returns:
        `{corruption: {severity: accuracy}, ..., "mean": float}`, as `corruption_accuracy`,
        with imagecorruptions' names (`glass_blur` is TFDS' `frosted_glass_blur`,
        `elastic_transform` its `elastic`).

    Raises:
        ValueError: a set is not prepared in `data_dir`, before any is read (the message
            names them and says how to prepare them).
    """
    corruptions = _check_corruptions(corruptions)
    severities = _check_severities(severities)
    check_int("batch_size", batch_size)
    check_int("max_images", max_images, minimum=0, allow_none=True)
    predict = _predict_fn(model, batch_size)
    _check_cifar10_corrupted_prepared(
        [cifar10_corrupted_config(c, s) for c in corruptions for s in severities], data_dir)

    def measure(corruption, severity):
        images, labels = _read_cifar10_corrupted(
            cifar10_corrupted_config(corruption, severity), data_dir, max_images)
        return _accuracy(predict, images, labels, batch_size)

    return _accuracy_grid(measure, corruptions, severities, verbose)
