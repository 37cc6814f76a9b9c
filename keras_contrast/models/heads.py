"""Projection heads that map encoder features to the L2-normalised contrastive space."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_contrast")
class ProjectionHead(keras.layers.Layer):
    """Linear or MLP projection head with an L2-normalised output.

    `kind="mlp"` stacks `Dense -> [BatchNorm] -> ReLU` for each entry of `hidden_dims`, then a
    final `Dense(output_dim)`; the SupCon reference head `Linear(d, d)-ReLU-Linear(d, 128)`
    is the default (`hidden_dims=None` means one hidden layer as wide as the input).
    `kind="linear"` is a single `Dense(output_dim)`. The output is L2-normalised (in float32,
    also under mixed precision) unless `normalize=False`.

    Works eagerly, inside `tf.function` and under `jit_compile`.

    Args:
        output_dim: size of the projection. Defaults to `128`.
        kind: `"mlp"` or `"linear"`. Defaults to `"mlp"`.
        hidden_dims: widths of the hidden layers for `kind="mlp"`; `None` means one hidden
            layer as wide as the input features. Must be `None` for `kind="linear"`.
            Defaults to `None`.
        use_batch_norm: BatchNorm after each hidden Dense (google-research supcon option);
            the hidden Dense layers then have no bias. Defaults to `False`.
        normalize: L2-normalise the output. Defaults to `True`.
        **kwargs: passed to `keras.layers.Layer`.

    Returns:
        Projections `[batch, output_dim]`, unit-norm rows when `normalize=True`.

    Example:

    ```python
    head = ProjectionHead(output_dim=128)
    z = head(np.random.rand(4, 512).astype("float32"))  # [4, 128], unit norm
    ```

    References:
        - [Khosla et al., Supervised Contrastive Learning, 2020](
          https://arxiv.org/abs/2004.11362)
        - [Chen et al., A Simple Framework for Contrastive Learning, 2020](
          https://arxiv.org/abs/2002.05709)
    """

    def __init__(
        self,
        output_dim=128,
        kind="mlp",
        hidden_dims=None,
        use_batch_norm=False,
        normalize=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(output_dim, int) or isinstance(output_dim, bool) or output_dim < 1:
            raise ValueError(
                f"`output_dim` must be a positive int. Received: output_dim={output_dim!r}"
            )
        if kind not in ("mlp", "linear"):
            raise ValueError(f"`kind` must be 'mlp' or 'linear'. Received: kind={kind!r}")
        if hidden_dims is not None:
            if kind == "linear":
                raise ValueError(
                    "`hidden_dims` must be None for kind='linear'. "
                    f"Received: hidden_dims={hidden_dims!r}"
                )
            hidden_dims = tuple(hidden_dims)
            if not hidden_dims or any(
                not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in hidden_dims
            ):
                raise ValueError(
                    "`hidden_dims` must be a non-empty list of positive ints or None. "
                    f"Received: hidden_dims={hidden_dims!r}"
                )
        self.output_dim = output_dim
        self.kind = kind
        self.hidden_dims = hidden_dims
        self.use_batch_norm = use_batch_norm
        self.normalize = normalize
        self.hidden_layers = []
        self.output_layer = None

    def build(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(
                "ProjectionHead expects features [batch, dim] with a known dim. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        if self.kind == "linear":
            widths = ()
        else:
            widths = self.hidden_dims or (int(input_shape[-1]),)
        shape = tuple(input_shape)
        self.hidden_layers = []
        for index, width in enumerate(widths):
            dense = keras.layers.Dense(
                width,
                use_bias=not self.use_batch_norm,
                dtype=self.dtype_policy,
                name=f"hidden_{index}",
            )
            dense.build(shape)
            shape = dense.compute_output_shape(shape)
            block = [dense]
            if self.use_batch_norm:
                norm = keras.layers.BatchNormalization(
                    momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name=f"bn_{index}"
                )
                norm.build(shape)
                block.append(norm)
            self.hidden_layers.append(block)
        self.output_layer = keras.layers.Dense(
            self.output_dim, dtype=self.dtype_policy, name="projection"
        )
        self.output_layer.build(shape)

    def call(self, inputs, training=None):
        x = inputs
        for block in self.hidden_layers:
            x = block[0](x)
            if len(block) > 1:
                x = block[1](x, training=training)
            x = ops.relu(x)
        x = self.output_layer(x)
        if self.normalize:
            x = ops.cast(x, "float32")
            x = x / ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-12))
        return x

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_dim": self.output_dim,
                "kind": self.kind,
                "hidden_dims": None if self.hidden_dims is None else list(self.hidden_dims),
                "use_batch_norm": self.use_batch_norm,
                "normalize": self.normalize,
            }
        )
        return config
