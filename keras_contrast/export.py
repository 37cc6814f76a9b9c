"""Exports trained models as TensorFlow SavedModels for serving.

`export_saved_model(model, export_dir, image_size)` writes a SavedModel with two
signatures, both returning `embeddings` (encoder features `[None, D]`) and, when the model
has a classifier, `probabilities` (`[None, classes]`):

- `serving_default`: input `images`, float32 `[None, height, width, 3]` on a 0-255 scale
  (other shapes fail with an `InvalidArgumentError` that names the expected shape);
- `serve_encoded`: input `image_bytes`, string `[None]` of JPEG or PNG bytes, decoded to RGB
  and resized (bilinear) to `image_size` inside the graph.

The graph holds everything: it loads with plain `tf.saved_model.load` (no keras_contrast, no
Keras needed) and serves with TensorFlow Serving. See `saved_models/README.md`.
"""

import keras
import tensorflow as tf

from keras_contrast.models.imclr import ImCLRClassifier
from keras_contrast.models.pi_model import PiModel


def _serving_outputs(model, images):
    """The exported outputs of `model` on float32 images (already scaled for the model)."""
    if isinstance(model, PiModel):
        # Its classifier's outputs, on self-paired images with ImCLR pairing.
        paired = model.self_paired(images)
        if getattr(model.classifier, "encoder", None) is not None:
            return _serving_outputs(model.classifier, paired)
        logits = model.classifier(paired, training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}
    if isinstance(model, ImCLRClassifier):
        inner = model.classifier
        paired = model.pair(images)
        if getattr(inner, "encoder", None) is not None:
            return _serving_outputs(inner, paired)
        logits = inner(paired, training=False)
        return {"probabilities": tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)}
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        # A plain encoder (e.g. `ResNet`): embeddings only.
        return {"embeddings": tf.cast(model(images, training=False), tf.float32)}
    features = encoder(images, training=False)
    outputs = {"embeddings": tf.cast(features, tf.float32)}
    classifier = getattr(model, "classifier", None)
    if classifier is None and getattr(model, "probe", None) is not None:
        # A contrastive trainer's online linear probe (float32, on the encoder features).
        classifier, features = model.probe, tf.cast(features, tf.float32)
    if classifier is not None:
        logits = classifier(features, training=False)
        outputs["probabilities"] = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
    return outputs


def serving_outputs(model, images, input_scale=1.0):
    """What the exported signatures compute, callable eagerly for checks and tests.

    Args:
        model: as for `export_saved_model`.
        images: float images `[batch, height, width, 3]` on a 0-255 scale.
        input_scale: as for `export_saved_model`. Defaults to `1.0`.

    Returns:
        A dict with `"embeddings"` (when the model has an encoder) and `"probabilities"`
        (when it has a classifier), float32.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank is not None and (images.shape.rank != 4 or images.shape[-1] != 3):
        raise ValueError(
            "`images` must be [batch, height, width, 3] (RGB, 0-255). "
            f"Received: images.shape={tuple(images.shape)}"
        )
    images = tf.cast(images, tf.float32)
    if input_scale != 1.0:
        images = images * input_scale
    return _serving_outputs(model, images)


def _check_images(images, height, width):
    """A runtime check with a clear message: signatures do not validate fed shapes."""
    shape = tf.shape(images)
    padded = tf.concat([shape, tf.zeros([4], tf.int32)], axis=0)
    valid = tf.logical_and(
        tf.equal(tf.size(shape), 4),
        tf.reduce_all(tf.equal(padded[1:4], tf.constant([height, width, 3]))),
    )
    check = tf.debugging.Assert(
        valid,
        [
            f"`images` must be float32 [batch, {height}, {width}, 3] (RGB, 0-255). "
            "Received shape:",
            shape,
        ],
        summarize=8,
        name="check_images",
    )
    with tf.control_dependencies([check]):
        return tf.identity(images)


def _is_image_file(image_bytes):
    """Whether the bytes start like a JPEG, PNG, GIF or BMP file (what decode_image reads)."""
    head = tf.strings.substr(image_bytes, 0, 4)
    return tf.reduce_any(
        tf.stack(
            [
                tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"),
                tf.equal(head, b"\x89PNG"),
                tf.equal(head, b"GIF8"),
                tf.equal(tf.strings.substr(head, 0, 2), b"BM"),
            ]
        )
    )


def _decode(image_bytes, height, width, index=None):
    if index is not None:
        check = tf.debugging.Assert(
            _is_image_file(image_bytes),
            [
                "`image_bytes` must hold JPEG, PNG, GIF or BMP files; this entry is not one "
                "(empty, text, or another format). Index in the batch:",
                index,
            ],
            name="check_image_bytes",
        )
        with tf.control_dependencies([check]):
            image_bytes = tf.identity(image_bytes)
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32)
    image.set_shape([None, None, 3])
    same_size = tf.logical_and(
        tf.equal(tf.shape(image)[0], height), tf.equal(tf.shape(image)[1], width)
    )
    image = tf.cond(
        same_size,
        lambda: image,
        lambda: tf.image.resize(image, [height, width], method="bilinear"),
    )
    return tf.ensure_shape(image, [height, width, 3])


def _check_size(value, name):
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    ):
        raise ValueError(
            f"`{name}` must be (height, width) with positive ints. Received: {name}={value!r}"
        )
    return tuple(value)


def export_saved_model(model, export_dir, image_size, input_scale=1.0, verbose=False):
    """Writes `model` as a SavedModel with `serving_default` and `serve_encoded` signatures.

    Works for the contrastive trainers (`SupConModel`, `SimCLRModel`, `MoCoModel`,
    `BYOLModel`; with `num_classes`, their online probe gives `probabilities`), `LinearClassifier`,
    `ImCLRClassifier` (the graph self-pairs each image, so clients send single images),
    `PiModel` (its classifier's outputs; self-paired with ImCLR pairing) and
    plain encoders such as `ResNet`. Models that have an `encoder` attribute export
    `embeddings` = encoder features; models with a `classifier` also export
    `probabilities` (softmax of its logits). An `ImCLRClassifier` around a classifier without
    an `encoder` attribute exports `probabilities` only.

    Args:
        model: the trained Keras model.
        export_dir: the directory to write (created; an existing SavedModel is replaced).
        image_size: `(height, width)` of the model's input; the `images` signature accepts
            exactly this size, encoded images are resized to it.
        input_scale: factor applied to the 0-255 inputs before the model. `1.0` for
            keras_contrast encoders (they rescale inside); `1 / 255` for a model trained on
            [0, 1] inputs. Defaults to `1.0`.
        verbose: print the archive's endpoints. Defaults to `False`.

    Returns:
        `export_dir`.

    Example:

    ```python
    keras_contrast.export.export_saved_model(
        model, "saved_models/supcon_cifar10/1", image_size=(32, 32))
    served = tf.saved_model.load("saved_models/supcon_cifar10/1")
    served.signatures["serve_encoded"](image_bytes=tf.constant([jpeg_bytes]))
    ```

    References:
        - [TensorFlow Serving REST API](
          https://www.tensorflow.org/tfx/serving/api_rest)
    """
    height, width = _check_size(image_size, "image_size")
    if not isinstance(model, (keras.Model, keras.layers.Layer)):
        raise ValueError(f"`model` must be a Keras model. Received: model={model!r}")
    if not isinstance(input_scale, (int, float)) or input_scale <= 0:
        raise ValueError(f"`input_scale` must be > 0. Received: input_scale={input_scale!r}")
    input_scale = float(input_scale)

    def outputs_for(images):
        # An empty batch gives empty outputs: the model runs on one blank image and the
        # result is sliced to zero rows (some layers cannot run on a batch of 0).
        count = tf.shape(images)[0]
        padded = tf.cond(
            count > 0, lambda: images, lambda: tf.zeros([1, height, width, 3], images.dtype)
        )
        outputs = serving_outputs(model, padded, input_scale)
        return {name: value[:count] for name, value in outputs.items()}

    def serve(images):
        return outputs_for(_check_images(images, height, width))

    def serve_encoded(image_bytes):
        indices = tf.range(tf.shape(image_bytes)[0])
        images = tf.map_fn(
            lambda args: _decode(args[0], height, width, index=args[1]),
            (image_bytes, indices),
            fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32),
        )
        return outputs_for(images)

    if not model.built:
        # e.g. an `ImCLRClassifier` whose inner classifier was trained but that was never
        # called itself: built for the exported input size.
        model.build((None, height, width, 3))
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serving_default",
        fn=serve,
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="images")],
    )
    archive.add_endpoint(
        name="serve_encoded",
        fn=serve_encoded,
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")],
    )
    archive.write_out(str(export_dir), verbose=verbose)
    return export_dir
