"""`keras_contrast.evaluation`: corruptions on the fly and accuracy under them."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from imagecorruptions import get_corruption_names

import keras_contrast as kc
from keras_contrast import evaluation
from keras_contrast.models import LinearClassifier, ResNet


@pytest.fixture(scope="module")
def sample():
    images, labels, _ = kc.data.cifar10_sample_arrays("validation")
    return images[::100][:10], labels[::100][:10].astype(np.int32)


def test_corruption_names_are_the_packages():
    assert evaluation.COMMON_CORRUPTIONS == tuple(get_corruption_names("common"))
    assert evaluation.EXTRA_CORRUPTIONS == tuple(get_corruption_names("validation"))
    assert len(evaluation.ALL_CORRUPTIONS) == 19


@pytest.mark.parametrize("corruption", evaluation.ALL_CORRUPTIONS)
def test_each_corruption_distorts_more_with_severity_and_is_seeded(sample, corruption):
    images = sample[0][:6]
    distortion = {}
    for severity in (1, 5):
        out = evaluation.corrupt_images(images, corruption, severity, seed=3)
        assert out.shape == images.shape and out.dtype == np.uint8
        distortion[severity] = np.abs(out.astype(float) - images).mean()
        np.testing.assert_array_equal(
            out, evaluation.corrupt_images(images, corruption, severity, seed=3))
    assert 0 < distortion[1] < distortion[5], distortion
    # The package draws from NumPy's global generator: it is restored afterwards.
    np.random.seed(11)
    expected = np.random.random()
    np.random.seed(11)
    evaluation.corrupt_images(images[:1], corruption, 2)
    assert np.random.random() == expected


def test_a_constant_classifier_has_its_constant_accuracy_everywhere(sample):
    images, labels = sample
    calls = []

    def always_class_2(batch):
        calls.append(len(batch))
        assert batch.dtype == np.float32 and batch.shape[1:] == (32, 32, 3)
        return np.tile(np.eye(10, dtype=np.float32)[2], (len(batch), 1))

    result = evaluation.corruption_accuracy(
        always_class_2, images, labels, corruptions=["gaussian_noise", "fog"],
        severities=(1, 5), batch_size=4, verbose=0,
    )
    expected = float(np.mean(labels == 2))
    assert expected > 0
    assert result == {"gaussian_noise": {1: expected, 5: expected},
                      "fog": {1: expected, 5: expected}, "mean": expected}
    assert calls == [4, 4, 2] * 4  # 10 images in batches of 4, for each of the 4 pairs


def test_accuracy_counts_the_argmax(sample):
    images, labels = sample
    # A classifier that is right on the first 7 images of every corrupted set.
    truth = np.eye(10, dtype=np.float32)[labels]
    wrong = np.eye(10, dtype=np.float32)[(labels + 1) % 10]
    scores = np.concatenate([truth[:7], wrong[7:]])
    result = evaluation.corruption_accuracy(
        lambda batch: {"probabilities": scores}, images, labels, corruptions=["contrast"],
        severities=(2,), batch_size=10, verbose=0)
    assert result == {"contrast": {2: 0.7}, "mean": 0.7}
    assert evaluation.accuracy(lambda batch: scores, images, labels, batch_size=10) == 0.7


def test_the_export_gives_the_numbers_of_the_keras_model(sample, tmp_path):
    images, labels = sample
    keras.utils.set_random_seed(0)
    model = LinearClassifier(ResNet(18, 4, (32, 32, 3)), num_classes=10)
    model(tf.zeros([1, 32, 32, 3]))
    export_dir = kc.export.export_saved_model(model, str(tmp_path / "export"), (32, 32))
    served = tf.saved_model.load(export_dir)
    serve = lambda x: served.signatures["serving_default"](images=tf.constant(x))  # noqa: E731
    arguments = dict(corruptions=["shot_noise", "pixelate"], severities=(1, 4), verbose=0)
    from_keras = evaluation.corruption_accuracy(model, images, labels, **arguments)
    from_export = evaluation.corruption_accuracy(serve, images, labels, **arguments)
    assert from_keras == from_export
    assert set(from_keras) == {"shot_noise", "pixelate", "mean"}


def test_results_are_cached_per_corruption_and_severity(sample, tmp_path):
    images, labels = sample
    calls = []

    def predict(batch):
        calls.append(1)
        return np.tile(np.eye(10, dtype=np.float32)[labels[0]], (len(batch), 1))

    path = str(tmp_path / "cache" / "robustness.json")
    args = dict(severities=(1, 2), batch_size=10, cache_path=path, verbose=0)
    first = evaluation.corruption_accuracy(predict, images, labels, corruptions=["snow"], **args)
    assert len(calls) == 2
    with open(path) as f:
        assert set(json.load(f)["accuracy"]) == {"snow/1", "snow/2"}
    # Cached pairs are not measured again; new ones are added.
    again = evaluation.corruption_accuracy(
        predict, images, labels, corruptions=["snow", "frost"], **args)
    assert len(calls) == 4 and again["snow"] == first["snow"]
    with pytest.raises(ValueError, match="`cache_path` holds results for other images"):
        evaluation.corruption_accuracy(predict, images[:5], labels[:5], **args)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(corruptions=["fog", "rain"]), r"`corruptions` must be .*corruptions=\['fog', 'rain'\]"),
        (dict(corruptions="fog"), "Received: corruptions='fog'"),
        (dict(corruptions=[]), r"Received: corruptions=\[\]"),
        (dict(severities=(0, 1)), r"`severities` must be .* ints in \[1, 5\]. Received: severities=\(0, 1\)"),
        (dict(severities=(6,)), r"severities=\(6,\)"),
        (dict(severities=(2.0,)), r"severities=\(2.0,\)"),
        (dict(batch_size=0), "`batch_size` must be an int >= 1. Received: batch_size=0"),
        (dict(images="float"), r"`images` must be uint8 \[N, H, W, 3\].*images.dtype=float32"),
        (dict(images="gray"), r"images.shape=\(10, 32, 32, 1\)"),
        (dict(images="small"), r"H and W >= 32 \(the corruptions minimum\).*images.shape=\(10, 32, 16, 3\)"),
        (dict(labels="short"), r"`labels` must be int class ids \[N\], one per image.*\(9,\)"),
        (dict(labels="float"), r"labels.dtype=float32"),
        (dict(model="not callable"), "`model` must be a Keras model or a callable"),
    ],
)
def test_bad_arguments(sample, kwargs, message):
    images, labels = sample
    model = lambda batch: np.ones((len(batch), 10), np.float32)  # noqa: E731
    if kwargs.get("images") == "float":
        images = images.astype(np.float32)
    elif kwargs.get("images") == "gray":
        images = images[..., :1]
    elif kwargs.get("images") == "small":
        images = images[:, :, :16]
    if kwargs.get("labels") == "short":
        labels = labels[:9]
    elif kwargs.get("labels") == "float":
        labels = labels.astype(np.float32)
    model = kwargs.get("model", model)
    options = {k: v for k, v in kwargs.items() if k not in ("images", "labels", "model")}
    with pytest.raises(ValueError, match=message):
        evaluation.corruption_accuracy(model, images, labels, verbose=0, **options)


def test_a_model_that_does_not_return_class_scores(sample):
    images, labels = sample
    with pytest.raises(ValueError, match=r"class probabilities \[B, classes\].*shape \(4,\)"):
        evaluation.corruption_accuracy(lambda b: np.zeros(len(b)), images, labels,
                                       corruptions=["fog"], severities=(1,), batch_size=4,
                                       verbose=0)


def test_corrupted_sets_are_kept_for_the_next_model(sample, tmp_path, monkeypatch):
    images, labels = sample
    predict = lambda batch: np.ones((len(batch), 10), np.float32)  # noqa: E731
    args = dict(corruptions=["fog"], severities=(1, 3), verbose=0,
                corrupted_dir=str(tmp_path / "sets"))
    first = evaluation.corruption_accuracy(predict, images, labels, **args)
    files = sorted(p.name for p in (tmp_path / "sets").iterdir())
    assert len(files) == 2 and files[0].endswith("_fog_1.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "sets" / files[1]),
                                  evaluation.corrupt_images(images, "fog", 3))
    # A second model reads the sets instead of corrupting again.
    monkeypatch.setattr(evaluation, "corrupt_images", lambda *a, **k: pytest.fail("again"))
    assert evaluation.corruption_accuracy(predict, images, labels, **args) == first


# CIFAR-10-C read through TFDS (`cifar10_corrupted`), offline: `tfds.testing.mock_data` and
# the metadata TFDS leaves after preparing a dataset.


def _pixel_class(images):
    """A classifier whose class is the first pixel's red value mod 10 (one-hot scores)."""
    return np.eye(10, dtype="float32")[np.asarray(images)[:, 0, 0, 0].astype(int) % 10]


def test_cifar10_corrupted_configs_are_tfds_configs():
    import tensorflow_datasets as tfds

    configs = {c.name for c in tfds.builder_cls("cifar10_corrupted").BUILDER_CONFIGS}
    for corruption in evaluation.ALL_CORRUPTIONS:
        for severity in evaluation.SEVERITIES:
            name = evaluation.cifar10_corrupted_config(corruption, severity)
            assert name.startswith("cifar10_corrupted/") and name.split("/")[1] in configs
    assert evaluation.cifar10_corrupted_config("glass_blur", 3) == (
        "cifar10_corrupted/frosted_glass_blur_3")
    assert evaluation.cifar10_corrupted_config("elastic_transform", 1) == (
        "cifar10_corrupted/elastic_1")
    with pytest.raises(ValueError, match="swirl"):
        evaluation.cifar10_corrupted_config("swirl", 1)
    with pytest.raises(ValueError, match="severities"):
        evaluation.cifar10_corrupted_config("fog", 6)


def fake_level(config, index):
    """The value of every pixel of example `index` of the mocked TFDS set `config`."""
    return (25 * sum(map(ord, config)) + 3 * index) % 256


def fake_tfds_records(builder, split, **kwargs):
    """Mocked TFDS records (`mock_data(as_dataset_fn=...)`): 12 examples per set, every pixel
    of example k equal to `fake_level(<config or dataset name>, k)`, label `k % 10`; so each
    corruption and severity of `cifar10_corrupted` has its own images."""
    del split, kwargs
    config = builder.builder_config.name if builder.builder_config else builder.name
    images = np.stack([np.full((32, 32, 3), fake_level(config, k), np.uint8) for k in range(12)])
    return tf.data.Dataset.from_tensor_slices(
        {"image": images, "label": np.arange(12, dtype=np.int64) % 10})


def test_cifar10_corrupted_accuracy_reads_each_set(tmp_path):
    import tensorflow_datasets as tfds

    from tests.data.test_tfds import _write_prepared_metadata

    for name in ("frosted_glass_blur", "fog"):
        for severity in (1, 5):
            _write_prepared_metadata(tmp_path, f"cifar10_corrupted/{name}_{severity}",
                                     {"test": 10000})
    with tfds.testing.mock_data(as_dataset_fn=fake_tfds_records, data_dir=str(tmp_path)):
        result = evaluation.cifar10_corrupted_accuracy(
            _pixel_class, corruptions=["glass_blur", "fog"], severities=(1, 5), max_images=5,
            data_dir=str(tmp_path), batch_size=2, verbose=0)
    keep = [0, 3, 6, 8, 11]  # 5 of 12, evenly spaced (rounded linspace)
    expected = {}
    for corruption, tfds_name in (("glass_blur", "frosted_glass_blur"), ("fog", "fog")):
        for severity in (1, 5):
            config = f"{tfds_name}_{severity}"
            hits = [fake_level(config, k) % 10 == k % 10 for k in keep]
            expected.setdefault(corruption, {})[severity] = sum(hits) / 5
    assert {c: result[c] for c in ("glass_blur", "fog")} == expected
    # The four sets score differently, so reading the wrong one would show.
    assert len({a for v in expected.values() for a in v.values()}) == 4
    assert result["mean"] == pytest.approx(np.mean([a for v in expected.values()
                                                    for a in v.values()]))


def test_cifar10_corrupted_not_prepared_is_a_clear_error(tmp_path):
    from tests.data.test_tfds import _write_prepared_metadata

    assert not evaluation.cifar10_corrupted_prepared(["fog"], (1,), data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"cifar10_corrupted/fog_1: not prepared.*tfds build"):
        evaluation.cifar10_corrupted_accuracy(_pixel_class, ["fog"], (1,),
                                              data_dir=str(tmp_path), verbose=0)
    _write_prepared_metadata(tmp_path, "cifar10_corrupted/fog_1", {"test": 10000})
    assert evaluation.cifar10_corrupted_prepared(["fog"], (1,), data_dir=str(tmp_path))
    assert not evaluation.cifar10_corrupted_prepared(["fog"], (1, 2), data_dir=str(tmp_path))
    # Checked before any set is read: the missing ones are named, and counted.
    with pytest.raises(ValueError, match=r"fog_2, cifar10_corrupted/fog_3, cifar10_corrupted/"
                                         r"fog_4 and 1 more: not prepared .*\(4 of the 5"):
        evaluation.cifar10_corrupted_accuracy(_pixel_class, ["fog"], data_dir=str(tmp_path),
                                              verbose=0)
    with pytest.raises(ValueError, match="max_images=-1"):
        evaluation.cifar10_corrupted_accuracy(_pixel_class, ["fog"], (1,), max_images=-1)
