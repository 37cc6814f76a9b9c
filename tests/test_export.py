import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast import export
from keras_contrast.models.heads import ProjectionHead
from keras_contrast.models.imclr import ImCLRClassifier
from keras_contrast.models.linear_eval import LinearClassifier
from keras_contrast.models.resnet import ResNet
from keras_contrast.models.supcon_model import SupConModel

SIZE = 16

# Runs in a fresh interpreter that never imports keras_contrast (nor keras): plain TensorFlow,
# as a serving host would. Writes the outputs of both signatures and the bad-input errors.
_CLIENT = textwrap.dedent(
    """
    import glob, json, sys
    import numpy as np
    import tensorflow as tf

    export_dir, payload_path, out_path = sys.argv[1:4]
    payload = np.load(payload_path)
    loaded = tf.saved_model.load(export_dir)
    result = {"signatures": sorted(loaded.signatures.keys())}
    default = loaded.signatures["serving_default"]
    encoded = loaded.signatures["serve_encoded"]
    result["default"] = {
        k: v.numpy().tolist() for k, v in default(images=tf.constant(payload["images"])).items()
    }
    blobs = [open(p, "rb").read() for p in sorted(glob.glob(payload_path + ".blob*"))]
    result["encoded"] = {
        k: v.numpy().tolist() for k, v in encoded(image_bytes=tf.constant(blobs)).items()
    }
    errors = []
    for bad in (payload["images"][..., :1], payload["images"][0]):
        try:
            default(images=tf.constant(bad))
            errors.append("no error")
        except tf.errors.InvalidArgumentError as e:
            errors.append(e.message)
    result["errors"] = errors
    result["leaked"] = [m for m in sys.modules if m.startswith("keras_contrast")]
    with open(out_path, "w") as f:
        json.dump(result, f)
    """
)


def _payload(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    other_size = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    blobs = [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]
    blobs.append(tf.io.encode_jpeg(other_size).numpy())
    blobs.append(tf.io.encode_png(images[0]).numpy())
    # What the client's pixels are after decoding (JPEG is lossy) and resizing.
    decoded = [tf.cast(tf.io.decode_jpeg(b), tf.float32).numpy() for b in blobs[:4]]
    decoded[3] = tf.image.resize(decoded[3], [SIZE, SIZE], method="bilinear").numpy()
    decoded.append(images[0].astype("float32"))
    float_images = images.astype("float32")
    path = tmp_path / "payload.npz"
    np.savez(path, images=float_images)
    for index, blob in enumerate(blobs):
        (tmp_path / f"payload.npz.blob{index}").write_bytes(blob)
    return path, float_images, np.stack(decoded)


def _serve_in_subprocess(export_dir, payload_path, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(_CLIENT)
    out = tmp_path / "served.json"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [sys.executable, str(script), str(export_dir), str(payload_path), str(out)],
        cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _check(served, expected_default, expected_encoded):
    assert served["signatures"] == ["serve_encoded", "serving_default"]
    assert served["leaked"] == []
    for name, expected in (("default", expected_default), ("encoded", expected_encoded)):
        assert sorted(served[name]) == sorted(expected)
        for key, value in expected.items():
            np.testing.assert_allclose(np.array(served[name][key]), value, atol=1e-5, rtol=0)
    for message in served["errors"]:
        assert f"[batch, {SIZE}, {SIZE}, 3]" in message


def _expected(fn, images):
    return {k: np.asarray(v) for k, v in fn(images).items()}


@pytest.mark.slow
def test_supcon_model_export_served_without_keras_contrast(tmp_path):
    model = SupConModel(ResNet(18, 4, (SIZE, SIZE, 3)), ProjectionHead(8), num_classes=3)
    model.build((None, SIZE, SIZE, 3))
    export_dir = tmp_path / "supcon" / "1"
    export.export_saved_model(model, export_dir, image_size=(SIZE, SIZE))
    payload, images, decoded = _payload(tmp_path)

    def keras_outputs(x):
        out = model(x)
        return {"embeddings": out["embeddings"], "probabilities": out["probabilities"]}

    served = _serve_in_subprocess(export_dir, payload, tmp_path)
    _check(served, _expected(keras_outputs, images), _expected(keras_outputs, decoded))

    cli = shutil.which("saved_model_cli")
    assert cli is not None
    shown = subprocess.run(
        [cli, "show", "--dir", str(export_dir), "--all"],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for needle in ("signature_def['serving_default']", "signature_def['serve_encoded']",
                   "inputs['images']", "inputs['image_bytes']", "outputs['embeddings']",
                   "outputs['probabilities']", f"(-1, {SIZE}, {SIZE}, 3)"):
        assert needle in shown.stdout


@pytest.mark.slow
def test_imclr_classifier_export_self_pairs(tmp_path):
    inner = LinearClassifier(ResNet(18, 4, (SIZE, 2 * SIZE, 3)), num_classes=4)
    model = ImCLRClassifier(inner, axis="width")
    model.build((None, SIZE, SIZE, 3))
    export_dir = tmp_path / "imclr" / "1"
    export.export_saved_model(model, export_dir, image_size=(SIZE, SIZE))
    payload, images, decoded = _payload(tmp_path)

    def keras_outputs(x):
        # Independent of the wrapper: pair by hand with NumPy, call the inner parts.
        paired = np.concatenate([x, x], axis=2)
        logits = inner(paired)
        return {
            "embeddings": inner.embed(paired),
            "probabilities": tf.nn.softmax(logits),
        }

    served = _serve_in_subprocess(export_dir, payload, tmp_path)
    _check(served, _expected(keras_outputs, images), _expected(keras_outputs, decoded))


def test_a_never_called_model_is_built_by_the_export(tmp_path):
    """An `ImCLRClassifier` trained through its inner classifier is never called itself."""
    inner = LinearClassifier(ResNet(18, 4, (SIZE, 2 * SIZE, 3)), num_classes=4)
    inner.build((None, SIZE, 2 * SIZE, 3))
    model = ImCLRClassifier(inner, axis="width")
    assert not model.built
    export_dir = export.export_saved_model(model, tmp_path / "export", image_size=(SIZE, SIZE))
    served = tf.saved_model.load(str(export_dir)).signatures["serving_default"]
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    expected = tf.nn.softmax(inner(np.concatenate([images, images], axis=2)))
    np.testing.assert_allclose(
        served(images=tf.constant(images))["probabilities"], expected, atol=1e-5
    )


def test_plain_and_channel_paired_classifier_outputs():
    # No subprocess: the traced graph computes what `serving_outputs` computes eagerly.
    classifier = keras.Sequential([
        keras.Input((SIZE, SIZE, 6)),
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    model = ImCLRClassifier(classifier, axis="channels")
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype("float32")
    out = export.serving_outputs(model, x)
    assert sorted(out) == ["probabilities"]
    np.testing.assert_allclose(
        out["probabilities"],
        tf.nn.softmax(classifier(np.concatenate([x, x], axis=-1))),
        atol=1e-6,
    )
    encoder = ResNet(18, 4, (SIZE, SIZE, 3), include_rescaling=False)
    out = export.serving_outputs(encoder, x, input_scale=1 / 255.0)
    # x * (1 / 255) and x / 255 round differently: compare relative to values of ~30.
    np.testing.assert_allclose(out["embeddings"], encoder(x / 255.0), atol=1e-5, rtol=1e-5)


def test_bad_arguments(tmp_path):
    encoder = ResNet(18, 4, (SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="image_size"):
        export.export_saved_model(encoder, tmp_path / "x", image_size=(SIZE,))
    with pytest.raises(ValueError, match="input_scale"):
        export.export_saved_model(encoder, tmp_path / "x", (SIZE, SIZE), input_scale=0)
    with pytest.raises(ValueError, match="model"):
        export.export_saved_model("encoder", tmp_path / "x", (SIZE, SIZE))
    with pytest.raises(ValueError, match=r"images.shape=\(2, 16, 16, 1\)"):
        export.serving_outputs(encoder, np.zeros((2, SIZE, SIZE, 1), "float32"))
    with pytest.raises(ValueError, match=r"images.shape=\(16, 16, 3\)"):
        export.serving_outputs(encoder, np.zeros((SIZE, SIZE, 3), "float32"))


def test_serving_names_the_bad_image_and_serves_empty_batches(tmp_path):
    model = SupConModel(ResNet(18, 4, (SIZE, SIZE, 3)), ProjectionHead(8), num_classes=3)
    export_dir = tmp_path / "supcon" / "1"
    export.export_saved_model(model, export_dir, image_size=(SIZE, SIZE))
    served = tf.saved_model.load(str(export_dir))
    encoded = served.signatures["serve_encoded"]
    default = served.signatures["serving_default"]
    good = tf.io.encode_png(np.zeros((SIZE, SIZE, 3), np.uint8)).numpy()
    for bad in (b"", b"not an image at all", b"RIFF....WEBP"):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"Index in the batch:\] \[2\]"):
            encoded(image_bytes=tf.constant([good, good, bad]))
    for out in (
        encoded(image_bytes=tf.constant([], tf.string)),
        default(images=tf.zeros([0, SIZE, SIZE, 3])),
    ):
        assert out["embeddings"].shape == (0, 32)
        assert out["probabilities"].shape == (0, 3)
    # Non-finite pixels are not checked: they give NaN outputs (saved_models/README.md).
    images = np.zeros((2, SIZE, SIZE, 3), "float32")
    images[1, 0, 0, 0] = np.nan
    out = default(images=tf.constant(images))
    assert np.all(np.isfinite(out["probabilities"].numpy()[0]))
    assert np.all(np.isnan(out["probabilities"].numpy()[1]))
