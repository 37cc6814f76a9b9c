"""CIFAR-style ResNet-18/34/50 encoders that return pooled features."""

import keras

_BLOCKS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
}


def _conv_bn(x, filters, kernel_size, stride, name, activation=True, synchronized=False):
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(
        momentum=0.9, epsilon=1e-5, synchronized=synchronized, name=f"{name}_bn"
    )(x)
    if activation:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _shortcut(x, filters, stride, name, sync):
    if stride == 1 and x.shape[-1] == filters:
        return x
    return _conv_bn(
        x, filters, 1, stride, f"{name}_shortcut", activation=False, synchronized=sync
    )


def _basic_block(x, filters, stride, name, sync):
    shortcut = _shortcut(x, filters, stride, name, sync)
    y = _conv_bn(x, filters, 3, stride, f"{name}_1", synchronized=sync)
    y = _conv_bn(y, filters, 3, 1, f"{name}_2", activation=False, synchronized=sync)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _bottleneck_block(x, filters, stride, name, sync):
    shortcut = _shortcut(x, 4 * filters, stride, name, sync)
    y = _conv_bn(x, filters, 1, 1, f"{name}_1", synchronized=sync)
    y = _conv_bn(y, filters, 3, stride, f"{name}_2", synchronized=sync)
    y = _conv_bn(y, 4 * filters, 1, 1, f"{name}_3", activation=False, synchronized=sync)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@keras.saving.register_keras_serializable(package="keras_contrast")
class ResNet(keras.Model):
    """CIFAR-style ResNet encoder (ResNet-18, -34 or -50) returning pooled features.

    The stem is a single 3x3 stride-1 convolution with BatchNorm and ReLU and no max-pool, as
    in the SupCon and SimCLR CIFAR experiments; four stages of basic (18, 34) or bottleneck
    (50) blocks with `width`, `2 * width`, `4 * width` and `8 * width` filters follow (strides
    1, 2, 2, 2), then global average pooling. The feature size is `8 * width` for ResNet-18/34
    and `32 * width` for ResNet-50 (512 and 2048 at the standard `width=64`). ResNet-18 at
    width 64 has about 11.2M trainable parameters.

    The model is a functional Keras model, so it saves to `.keras`, runs under `jit_compile`,
    mixed precision and any `tf.distribute` strategy.

    Args:
        depth: 18, 34 or 50. Defaults to `18`.
        width: filters of the first stage; 64 is the standard ResNet. Defaults to `64`.
        image_shape: the input shape `(height, width, channels)`; height and width may be
            `None`. Defaults to `(None, None, 3)`.
        include_rescaling: multiply the inputs by 1/255 first, so the model takes images on a
            0-255 scale (what `keras_contrast.export` serves). Set `False` for inputs that are
            already in [0, 1]. Defaults to `True`.
        synchronized_batch_norm: compute BatchNorm statistics over the global batch of all
            replicas (`keras.layers.BatchNormalization(synchronized=True)`), as SimCLR's
            global BN does; the moving statistics then stay identical on every replica and
            worker. Defaults to `False` (per-replica statistics).
        name: the model name. Defaults to `"resnet{depth}"`.
        **kwargs: passed to `keras.Model` (e.g. `dtype`, `trainable`).

    Returns:
        A `keras.Model` mapping images `[batch, height, width, channels]` to features
        `[batch, feature_dim]`.

    Example:

    ```python
    encoder = keras_contrast.models.ResNet(depth=18, width=64, image_shape=(32, 32, 3))
    features = encoder(np.zeros((2, 32, 32, 3), "float32"))  # [2, 512]
    ```

    References:
        - [He et al., Deep Residual Learning for Image Recognition, 2016](
          https://arxiv.org/abs/1512.03385)
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
    """

    def __init__(
        self,
        depth=18,
        width=64,
        image_shape=(None, None, 3),
        include_rescaling=True,
        synchronized_batch_norm=False,
        name=None,
        **kwargs,
    ):
        if depth not in _BLOCKS:
            raise ValueError(
                f"`depth` must be one of {sorted(_BLOCKS)}. Received: depth={depth!r}"
            )
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"`width` must be a positive int. Received: width={width!r}")
        image_shape = tuple(image_shape)
        if len(image_shape) != 3:
            raise ValueError(
                "`image_shape` must be (height, width, channels). "
                f"Received: image_shape={image_shape!r}"
            )
        block_type, repeats = _BLOCKS[depth]
        block = _basic_block if block_type == "basic" else _bottleneck_block

        inputs = keras.Input(shape=image_shape, name="images")
        x = inputs
        if include_rescaling:
            x = keras.layers.Rescaling(1.0 / 255.0, name="rescaling")(x)
        sync = bool(synchronized_batch_norm)
        x = _conv_bn(x, width, 3, 1, "stem", synchronized=sync)
        for stage, count in enumerate(repeats):
            filters = width * 2**stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                x = block(x, filters, stride, f"stage{stage + 1}_block{index + 1}", sync)
        outputs = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        super().__init__(inputs=inputs, outputs=outputs, name=name or f"resnet{depth}", **kwargs)

        self.depth = depth
        self.width = width
        self.image_shape = image_shape
        self.include_rescaling = include_rescaling
        self.synchronized_batch_norm = sync

    @property
    def feature_dim(self):
        """Size of the pooled features."""
        return self.outputs[0].shape[-1]

    def get_config(self):
        return {
            "depth": self.depth,
            "width": self.width,
            "image_shape": self.image_shape,
            "include_rescaling": self.include_rescaling,
            "synchronized_batch_norm": self.synchronized_batch_norm,
            "name": self.name,
            "trainable": self.trainable,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["image_shape"] = tuple(config["image_shape"])
        return cls(**config)
