"""Encoders built from `keras.applications` backbones for ImageNet-size inputs."""

import keras

# Application class name prefix -> the `keras.applications` module holding its
# `preprocess_input`. Longest prefixes first so that "ResNet50V2" is not read as "ResNet".
_PREPROCESSING_MODULES = (
    ("ResNet50V2", "resnet_v2"),
    ("ResNet101V2", "resnet_v2"),
    ("ResNet152V2", "resnet_v2"),
    ("ResNet", "resnet"),
    ("EfficientNetV2", "efficientnet_v2"),
    ("EfficientNet", "efficientnet"),
    ("MobileNetV3", "mobilenet_v3"),
    ("MobileNetV2", "mobilenet_v2"),
    ("MobileNet", "mobilenet"),
    ("ConvNeXt", "convnext"),
    ("DenseNet", "densenet"),
    ("InceptionV3", "inception_v3"),
    ("InceptionResNetV2", "inception_resnet_v2"),
    ("Xception", "xception"),
    ("RegNet", "regnet"),
    ("VGG16", "vgg16"),
    ("VGG19", "vgg19"),
)


def _preprocessing_module(application):
    for prefix, module in _PREPROCESSING_MODULES:
        if application.startswith(prefix):
            return module
    return None


@keras.saving.register_keras_serializable(package="keras_contrast")
class ApplicationPreprocessing(keras.layers.Layer):
    """Applies a `keras.applications` family's `preprocess_input` to 0-255 images.

    Args:
        module: the `keras.applications` module name, e.g. `"resnet"` or `"mobilenet_v2"`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        The preprocessed images, same shape as the input.

    Example:

    ```python
    layer = ApplicationPreprocessing("resnet")
    y = layer(np.full((1, 32, 32, 3), 128.0, "float32"))
    ```

    References:
        - [Keras Applications](https://keras.io/api/applications/)
    """

    def __init__(self, module, **kwargs):
        super().__init__(**kwargs)
        if not hasattr(getattr(keras.applications, str(module), None), "preprocess_input"):
            raise ValueError(
                "`module` must name a `keras.applications` module with `preprocess_input`. "
                f"Received: module={module!r}"
            )
        self.module = module

    def call(self, inputs):
        return getattr(keras.applications, self.module).preprocess_input(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"module": self.module})
        return config


@keras.saving.register_keras_serializable(package="keras_contrast")
class ApplicationBackbone(keras.Model):
    """Any `keras.applications` model as a pooled-feature encoder for 0-255 images.

    Builds `keras.applications.<application>(include_top=False, pooling=pooling)` and puts the
    application's own `preprocess_input` inside the model, so it takes images on a 0-255 scale
    like `ResNet(include_rescaling=True)` and exports with `keras_contrast.export` as is.

    Args:
        application: the class name in `keras.applications`, e.g. `"ResNet50"`,
            `"MobileNetV2"`, `"EfficientNetB0"`. Defaults to `"ResNet50"`.
        image_shape: `(height, width, 3)`. Defaults to `(224, 224, 3)`.
        weights: `None` (random initialisation) or `"imagenet"` or a weights file, as for
            the application. After saving to `.keras` the weights come from the file, so the
            saved config holds `None`. Defaults to `None`.
        pooling: `"avg"` or `"max"` global pooling. Defaults to `"avg"`.
        name: the model name. Defaults to `"<application>_backbone"` in lower case.
        **kwargs: passed to `keras.Model`.

    Returns:
        A `keras.Model` mapping images `[batch, height, width, 3]` to pooled features.

    Example:

    ```python
    encoder = ApplicationBackbone("ResNet50", image_shape=(224, 224, 3))
    features = encoder(np.zeros((1, 224, 224, 3), "float32"))  # [1, 2048]
    ```

    References:
        - [Keras Applications](https://keras.io/api/applications/)
    """

    def __init__(
        self,
        application="ResNet50",
        image_shape=(224, 224, 3),
        weights=None,
        pooling="avg",
        name=None,
        **kwargs,
    ):
        builder = getattr(keras.applications, str(application), None)
        module = _preprocessing_module(str(application))
        if builder is None or not callable(builder) or module is None:
            raise ValueError(
                "`application` must be a model class in `keras.applications` "
                "(e.g. 'ResNet50', 'MobileNetV2', 'EfficientNetB0'). "
                f"Received: application={application!r}"
            )
        if pooling not in ("avg", "max"):
            raise ValueError(f"`pooling` must be 'avg' or 'max'. Received: pooling={pooling!r}")
        image_shape = tuple(image_shape)
        if len(image_shape) != 3 or image_shape[-1] != 3:
            raise ValueError(
                "`image_shape` must be (height, width, 3). "
                f"Received: image_shape={image_shape!r}"
            )
        inputs = keras.Input(shape=image_shape, name="images")
        x = ApplicationPreprocessing(module, name="preprocessing")(inputs)
        base = builder(
            include_top=False, weights=weights, input_shape=image_shape, pooling=pooling
        )
        outputs = base(x)
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            name=name or f"{str(application).lower()}_backbone",
            **kwargs,
        )
        self.application = application
        self.image_shape = image_shape
        self.weights_source = weights
        self.pooling = pooling

    @property
    def feature_dim(self):
        """Size of the pooled features."""
        return self.outputs[0].shape[-1]

    def get_config(self):
        return {
            "application": self.application,
            "image_shape": self.image_shape,
            # The trained weights are restored from the `.keras` file, never re-downloaded.
            "weights": None,
            "pooling": self.pooling,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["image_shape"] = tuple(config["image_shape"])
        return cls(**config)
