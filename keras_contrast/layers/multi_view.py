"""Turns one batch of images into several augmented views."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_contrast")
class MultiView(keras.layers.Layer):
    """Runs each pipeline on the same images: V views for contrastive losses.

    Returns `[B, V, H, W, C]` when all views share a shape (what SupCon and
    the two-view trainers consume), else a tuple of `V` tensors (CLSA's
    multi-crop: 224/192/160/128/96 strong crops). Unbatched input gives
    `[V, H, W, C]` or a tuple.

    Args:
        pipelines: list of layers (e.g. `weak_pipeline(...)`, repeated for 2
            views: pass two instances with different seeds).
        **kwargs: base layer keyword arguments.

    Example:

    ```python
    views = MultiView([weak_pipeline(32, seed=1), weak_pipeline(32, seed=2)])
    ```
    """

    def __init__(self, pipelines, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(pipelines, (list, tuple)) or not pipelines:
            raise ValueError(
                "`pipelines` must be a non-empty list of layers. "
                f"Received: pipelines={pipelines}"
            )
        pipelines = [
            keras.saving.deserialize_keras_object(p) if isinstance(p, dict) else p
            for p in pipelines
        ]
        for p in pipelines:
            if not isinstance(p, keras.layers.Layer):
                raise ValueError(
                    f"`pipelines` must hold Keras layers. Received: pipelines={pipelines}"
                )
        self.pipelines = list(pipelines)

    def call(self, images, training=True):
        images = tf.convert_to_tensor(images)
        views = [p(images, training=training) for p in self.pipelines]
        shapes = {tuple(v.shape) for v in views}
        if len(shapes) == 1 and None not in next(iter(shapes))[-3:]:
            axis = 1 if images.shape.rank == 4 else 0
            return tf.stack(views, axis=axis)
        return tuple(views)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"pipelines": [keras.saving.serialize_keras_object(p) for p in self.pipelines]}
        )
        return config
