import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_contrast.models.callbacks import KNNAccuracy, knn_predict


def _numpy_knn(train, train_labels, query, num_classes, k, temperature):
    train = train / np.linalg.norm(train, axis=1, keepdims=True)
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    predictions = []
    for q in query:
        sims = [float(np.dot(q, t)) for t in train]
        order = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes = [0.0] * num_classes
        for i in order:
            votes[train_labels[i]] += np.exp(sims[i] / temperature)
        predictions.append(int(np.argmax(votes)))
    return np.array(predictions)


def test_knn_predict_matches_numpy():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(40, 5)).astype("float32")
    labels = rng.integers(0, 4, 40)
    query = rng.normal(size=(15, 5)).astype("float32")
    for k in (1, 5, 100):
        expected = _numpy_knn(train, labels, query, 4, k, 0.5)
        np.testing.assert_array_equal(knn_predict(train, labels, query, 4, k, 0.5), expected)


def test_callback_reports_accuracy_in_logs():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 4)) * 5

    def split(n):
        y = rng.integers(0, 3, n)
        return (centers[y] + rng.normal(size=(n, 4)) * 0.1).astype("float32"), y

    (x_train, y_train), (x_val, y_val) = split(30), split(12)
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Identity()])
    callback = KNNAccuracy((x_train, y_train),
                           tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(5),
                           num_classes=3, k=5, encoder=encoder)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    history = model.fit(x_train, np.zeros(30), epochs=2, verbose=0, callbacks=[callback])
    assert history.history["knn_accuracy"] == [1.0, 1.0]
    # Shuffled labels: kNN accuracy must drop (the callback reads the labels it is given).
    callback = KNNAccuracy((x_train, (y_train + 1) % 3), (x_val, y_val), num_classes=3, k=5,
                           encoder=encoder)
    callback.set_model(model)
    assert callback.evaluate() == 0.0


def test_bad_arguments():
    data = (np.zeros((2, 4), "float32"), np.zeros(2))
    with pytest.raises(ValueError, match="k=0"):
        KNNAccuracy(data, data, num_classes=2, k=0)
    with pytest.raises(ValueError, match="num_classes=1"):
        KNNAccuracy(data, data, num_classes=1)
    with pytest.raises(ValueError, match="temperature"):
        KNNAccuracy(data, data, num_classes=2, temperature=0)
    callback = KNNAccuracy([1, 2, 3], data, num_classes=2,
                           encoder=keras.Sequential([keras.Input((4,))]))
    with pytest.raises(ValueError, match="train_data"):
        callback.evaluate()
