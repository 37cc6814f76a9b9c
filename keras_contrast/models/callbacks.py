"""Callbacks for contrastive pretraining."""

import keras
import numpy as np
import tensorflow as tf


def knn_predict(train_features, train_labels, query_features, num_classes, k=200,
                temperature=0.1):
    """Weighted k-nearest-neighbour class prediction on cosine similarity.

    Each query votes over its `k` most similar training features, each neighbour weighted by
    `exp(similarity / temperature)` (Wu et al.'s instance-discrimination kNN monitor).

    Args:
        train_features: `[n_train, dim]` features of the memory bank.
        train_labels: int `[n_train]` labels of the memory bank.
        query_features: `[n_query, dim]` features to classify.
        num_classes: number of classes.
        k: neighbours; clipped to `n_train`. Defaults to `200`.
        temperature: softmax temperature of the neighbour weights. Defaults to `0.1`.

    Returns:
        Int predictions `[n_query]` (a `tf.Tensor`).
    """
    train = tf.math.l2_normalize(tf.cast(train_features, tf.float32), axis=-1)
    query = tf.math.l2_normalize(tf.cast(query_features, tf.float32), axis=-1)
    k = min(int(k), int(train.shape[0]))
    similarity = tf.matmul(query, train, transpose_b=True)
    top_similarity, top_index = tf.math.top_k(similarity, k=k)
    neighbour_labels = tf.gather(tf.cast(tf.reshape(train_labels, [-1]), tf.int32), top_index)
    weights = tf.exp(top_similarity / temperature)
    votes = tf.reduce_sum(
        tf.one_hot(neighbour_labels, num_classes) * weights[..., None], axis=1
    )
    return tf.argmax(votes, axis=-1, output_type=tf.int32)


class KNNAccuracy(keras.callbacks.Callback):
    """Reports weighted kNN accuracy of the encoder's features on a held-out split.

    At the end of every `frequency`-th epoch, embeds `train_data` (the memory bank) and
    `eval_data` with the model's encoder in inference mode and classifies each evaluation
    example by a weighted vote of its `k` nearest training features (cosine similarity,
    weights `exp(similarity / temperature)`). The accuracy is added to the epoch logs as
    `knn_accuracy` (visible in `History`, usable by `ModelCheckpoint`/`EarlyStopping`).

    Args:
        train_data: a `tf.data.Dataset` of batched `(images, int_labels)`, or a tuple of
            arrays `(images, labels)`.
        eval_data: the same for the held-out split.
        num_classes: number of classes.
        k: neighbours. Defaults to `200`.
        temperature: neighbour weight temperature. Defaults to `0.1`.
        frequency: evaluate every this many epochs. Defaults to `1`.
        encoder: the model to embed with; `None` uses `model.encoder` (e.g. `SupConModel`).
            Defaults to `None`.
        batch_size: batch size when the data are arrays. Defaults to `256`.
        log_name: the key in the logs. Defaults to `"knn_accuracy"`.

    Example:

    ```python
    model.fit(train_views, epochs=100, callbacks=[
        KNNAccuracy((x_train, y_train), (x_val, y_val), num_classes=10)])
    ```

    References:
        - [Wu et al., Unsupervised Feature Learning via Non-Parametric Instance
          Discrimination, 2018](https://arxiv.org/abs/1805.01978)
    """

    def __init__(
        self,
        train_data,
        eval_data,
        num_classes,
        k=200,
        temperature=0.1,
        frequency=1,
        encoder=None,
        batch_size=256,
        log_name="knn_accuracy",
    ):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"`num_classes` must be an int >= 2. Received: num_classes={num_classes!r}"
            )
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"`k` must be a positive int. Received: k={k!r}")
        if temperature <= 0:
            raise ValueError(f"`temperature` must be > 0. Received: temperature={temperature}")
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(
                f"`frequency` must be a positive int. Received: frequency={frequency!r}"
            )
        self.train_data = train_data
        self.eval_data = eval_data
        self.num_classes = num_classes
        self.k = k
        self.temperature = temperature
        self.frequency = frequency
        self.encoder = encoder
        self.batch_size = batch_size
        self.log_name = log_name
        self._embed_fn = None

    def _dataset(self, data, arg):
        if isinstance(data, tf.data.Dataset):
            return data
        if isinstance(data, (tuple, list)) and len(data) == 2:
            return tf.data.Dataset.from_tensor_slices(tuple(data)).batch(self.batch_size)
        raise ValueError(
            f"`{arg}` must be a tf.data.Dataset of (images, labels) batches or a tuple "
            f"(images, labels). Received: {arg}={type(data).__name__}"
        )

    def _embed(self, data, arg):
        encoder = self.encoder if self.encoder is not None else getattr(self.model, "encoder")
        if self._embed_fn is None:
            self._embed_fn = tf.function(
                lambda x: encoder(x, training=False), reduce_retracing=True
            )
        features, labels = [], []
        for images, batch_labels in self._dataset(data, arg):
            features.append(tf.cast(self._embed_fn(images), tf.float32).numpy())
            labels.append(np.asarray(batch_labels).reshape(-1))
        return np.concatenate(features), np.concatenate(labels)

    def evaluate(self):
        """Embeds both splits and returns the kNN accuracy as a Python float."""
        train_features, train_labels = self._embed(self.train_data, "train_data")
        eval_features, eval_labels = self._embed(self.eval_data, "eval_data")
        predictions = knn_predict(
            train_features, train_labels, eval_features, self.num_classes, self.k,
            self.temperature,
        )
        return float(np.mean(predictions.numpy() == eval_labels.astype(np.int32)))

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.frequency:
            return
        accuracy = self.evaluate()
        if logs is not None:
            logs[self.log_name] = accuracy
