"""MoCo's queue of negative keys, in non-trainable Keras variables."""

import keras
import tensorflow as tf

from keras_contrast.distribute import gather_from_replicas
from keras_contrast.models.momentum import update_per_replica


@keras.saving.register_keras_serializable(package="keras_contrast")
class KeyQueue(keras.layers.Layer):
    """A FIFO queue of `size` L2-normalised keys of dimension `dim` (MoCo's negatives).

    The keys live in a non-trainable `[size, dim]` variable and the write position in a
    non-trainable int32 `pointer` variable, so both are saved by `model.save`,
    `model.save_weights` and `tf.train.Checkpoint` with the model that owns the layer. The
    queue starts as random unit vectors, as in MoCo. `enqueue(keys)` overwrites the oldest
    `n` keys (rows `pointer .. pointer + n - 1` modulo `size`, wrapping around the end) and
    advances the pointer modulo `size`; any `0 <= n <= size` works, so short last batches
    (datasets whose size is not a multiple of the batch) are enqueued like the others.

    With `with_labels=True` the queue also keeps each key's int label in a non-trainable
    `labels` variable (`-1` for the random initial keys, which are then negatives of every
    anchor): SupCon's memory of labelled keys. `enqueue(keys, labels)` writes both.

    Inside the replica function of a `tf.distribute` strategy, `enqueue` all-gathers the
    keys (and labels) of every replica first and enqueues the **global** batch (in replica
    order) on every replica, so all replicas hold the same queue. Calling the layer returns the queue's
    current contents `[size, dim]`.

    Args:
        size: number of keys `K`. Defaults to `65536`.
        dim: key dimension. Defaults to `128`.
        seed: seed of the random initial keys. Defaults to `None`.
        with_labels: also keep an int label per key. Defaults to `False`.
        **kwargs: passed to `keras.layers.Layer`.

    Example:

    ```python
    queue = KeyQueue(size=8, dim=4)
    queue.enqueue(tf.math.l2_normalize(tf.random.normal([2, 4]), -1))
    negatives = queue()  # [8, 4]; rows 0-1 hold the new keys, pointer is 2
    ```

    References:
        - [He et al., 2020. Momentum Contrast for Unsupervised Visual Representation
          Learning](https://arxiv.org/abs/1911.05722).
    """

    def __init__(self, size=65536, dim=128, seed=None, with_labels=False, **kwargs):
        super().__init__(**kwargs)
        for arg, value in (("size", size), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{arg}` must be a positive int. Received: {arg}={value!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.size = size
        self.dim = dim
        self.seed = seed
        self.with_labels = bool(with_labels)
        self.build()

    def build(self, input_shape=None):
        if self.built:
            return
        seed = self.seed

        def unit_normal(shape, dtype=None):
            return tf.math.l2_normalize(
                keras.random.normal(shape, seed=seed, dtype=dtype or "float32"), axis=-1
            )

        self.queue = self.add_weight(
            shape=(self.size, self.dim),
            initializer=unit_normal,
            trainable=False,
            dtype="float32",
            name="queue",
        )
        self.pointer = self.add_weight(
            shape=(), initializer="zeros", trainable=False, dtype="int32", name="pointer"
        )
        self.labels = None
        if self.with_labels:
            self.labels = self.add_weight(
                shape=(self.size,),
                initializer=keras.initializers.Constant(-1),
                trainable=False,
                dtype="int32",
                name="labels",
            )
        self.built = True

    def call(self, inputs=None):
        return tf.convert_to_tensor(self.queue)

    def enqueue(self, keys, labels=None, gather=True):
        """Replaces the oldest keys by `keys` (all replicas' keys if `gather`).

        Args:
            keys: `[n, dim]` keys, usually L2-normalised; never differentiated.
            labels: int `[n]` labels of the keys; required with `with_labels=True`, refused
                otherwise. Defaults to `None`.
            gather: all-gather the keys of every replica first (inside a strategy's replica
                context). Defaults to `True`.

        Returns:
            The enqueued (global) keys `[N, dim]`.
        """
        if self.with_labels != (labels is not None):
            raise ValueError(
                "`labels` must be given exactly when the queue has `with_labels=True`. "
                f"Received: with_labels={self.with_labels}, labels="
                f"{'given' if labels is not None else None}"
            )
        keys = tf.stop_gradient(tf.cast(tf.convert_to_tensor(keys), self.queue.dtype))
        if keys.shape.rank != 2 or (keys.shape[-1] is not None and keys.shape[-1] != self.dim):
            raise ValueError(
                f"`keys` must have shape [batch, {self.dim}]. Received: keys.shape={tuple(keys.shape)}"
            )
        if labels is not None:
            labels = tf.reshape(tf.cast(labels, "int32"), [-1])
        if gather:
            if labels is not None:
                (keys, labels), _ = gather_from_replicas(keys, labels)
            else:
                (keys,), _ = gather_from_replicas(keys)
        num = keys.shape[0]
        if num is not None and num > self.size:
            raise ValueError(
                "The global batch of keys must be at most the queue size. Received: "
                f"size={self.size}, global batch={num}"
            )
        num = tf.shape(keys)[0]
        checks = [
            tf.debugging.assert_less_equal(
                num, self.size,
                message=f"The global batch of keys must be at most the queue size ({self.size})",
            )
        ]
        with tf.control_dependencies(checks):
            start = tf.convert_to_tensor(self.pointer)
            # Any batch size: a batch that does not divide the size (a short last batch)
            # wraps around the end of the queue.
            indices = tf.math.floormod(start + tf.range(num), self.size)
            new_pointer = tf.math.floormod(start + num, self.size)

        def write(queue, keys, indices):
            return queue.scatter_update(tf.IndexedSlices(keys, indices))

        def move(pointer, value):
            return pointer.assign(value)

        updates = [(self.queue, write, (keys, indices)), (self.pointer, move, (new_pointer,))]
        if labels is not None:
            updates.append((self.labels, write, (labels, indices)))
        update_per_replica(updates)
        return keys

    def compute_output_spec(self, inputs=None):
        return keras.KerasTensor((self.size, self.dim), dtype=self.queue.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"size": self.size, "dim": self.dim, "seed": self.seed, "with_labels": self.with_labels}
        )
        return config
