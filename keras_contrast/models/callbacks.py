"""Callbacks for contrastive pretraining: a kNN monitor and crash-safe backups."""

import json
import numbers
import os
import shutil
import warnings

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


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` that a kill, a full disk or a damaged file cannot break.

    Saves the model's weights, its optimizer's state and the epoch at the end of every epoch
    (or every `save_freq` batches) and, when `fit` is started again after an interruption,
    restores the newest backup and continues from the epoch after it, as Keras' callback
    does. Keras' callback overwrites its files in place, so a kill during the first write,
    a full disk, or an empty or truncated `training_metadata.json` makes every later start
    fail (`OSError: truncated file`, `JSONDecodeError`). Here instead:

    - **Atomic writes.** Each backup is written into a temporary folder (weights, then
      `training_metadata.json`, each flushed to disk) that is renamed to
      `backup_dir/checkpoint-<n>` only when complete. A kill or a failed write (disk full)
      at any moment leaves the previous backups intact; an incomplete temporary folder is
      removed at the next start (a failed write removes its own and re-raises the error).
    - **Validated restore with fallback.** At the start of `fit` the backups are tried from
      the newest: a backup whose metadata is missing, empty, truncated or invalid, or whose
      weights file is missing or cannot be loaded, is skipped with a warning that names the
      file and deleted, and the previous one is tried. If none can be restored, training
      starts from scratch (the model's initial weights, even if a damaged file was half
      loaded) with a warning naming the files. A damaged backup never makes `fit` fail.
    - **Keras' layout is read too.** A `backup_dir` written by
      `keras.callbacks.BackupAndRestore` (`latest.weights.h5`, `training_metadata.json`,
      and with `double_checkpoint=True` their `.bkp` copies) is restored the same way, after
      the folders written here, so a run started with Keras' callback resumes after an
      upgrade; those files are removed once a backup of this callback is written.
    - **Last epoch's logs.** The metadata also holds the logs of the epoch (`loss`, ...),
      available after a restore as `restored_logs`, so that a run that resumes after its
      last epoch can still report its final metrics.

    The newest `keep` backups are kept (2 by default: a backup damaged after it was written,
    e.g. by a failing disk, falls back to the previous epoch). The folder must be on a local
    file system (atomic renames) and belong to one training run, as for Keras' callback.

    Args:
        backup_dir: the folder of the backups (created if needed), a local path.
        save_freq: `"epoch"` (at the end of each epoch) or an int (every that many batches;
            as with Keras' callback, a restore resumes at the start of the saved epoch).
            Defaults to `"epoch"`.
        keep: the number of newest backups kept, an int >= 1. Defaults to `2`.
        delete_checkpoint: whether `backup_dir` is deleted when `fit` ends. Pass `False`
            when the run has more to save after `fit` (an exported model, a "done" marker),
            and delete the folder yourself once that is written, so that a kill in between
            does not lose the training. Defaults to `True`.

    Example:

    ```python
    backup = keras_contrast.models.AtomicBackupAndRestore("/tmp/run/backup")
    model.fit(dataset, epochs=100, callbacks=[backup])  # killed? the same call resumes
    ```
    """

    CHECKPOINT_PREFIX = "checkpoint-"
    TEMPORARY_PREFIX = ".tmp-checkpoint-"
    WEIGHTS_NAME = "latest.weights.h5"
    METADATA_NAME = "training_metadata.json"

    def __init__(self, backup_dir, save_freq="epoch", keep=2, delete_checkpoint=True):
        if not backup_dir or not isinstance(backup_dir, (str, os.PathLike)):
            raise ValueError(
                f"`backup_dir` must be a non-empty path. Received: backup_dir={backup_dir!r}"
            )
        backup_dir = os.fspath(backup_dir)
        if "://" in backup_dir:  # gs://, s3://, hdfs://: no atomic renames
            raise ValueError(
                "`backup_dir` must be on a local file system (backups are made atomic by "
                f"renames). Received: backup_dir={backup_dir!r}"
            )
        if save_freq != "epoch" and (
            not isinstance(save_freq, numbers.Integral)
            or isinstance(save_freq, bool)
            or save_freq < 1
        ):
            raise ValueError(
                "`save_freq` must be 'epoch' or an int >= 1. "
                f"Received: save_freq={save_freq!r}"
            )
        if not isinstance(keep, numbers.Integral) or isinstance(keep, bool) or keep < 1:
            raise ValueError(f"`keep` must be an int >= 1. Received: keep={keep!r}")
        super().__init__(
            backup_dir, save_freq=save_freq, double_checkpoint=False,
            delete_checkpoint=delete_checkpoint,
        )
        self.keep = int(keep)
        self.restored_logs = None
        self._epoch_logs = None

    # Restoring.

    def _checkpoints(self):
        """`(number, folder)` of the complete backups, the newest first."""
        if not os.path.isdir(self.backup_dir):
            return []
        found = []
        for name in os.listdir(self.backup_dir):
            number = name[len(self.CHECKPOINT_PREFIX):]
            if name.startswith(self.CHECKPOINT_PREFIX) and number.isdigit():
                found.append((int(number), os.path.join(self.backup_dir, name)))
        return sorted(found, reverse=True)

    def _candidates(self):
        """`(weights, metadata, files to delete if damaged)`, the newest backup first."""
        candidates = [
            (
                os.path.join(folder, self.WEIGHTS_NAME),
                os.path.join(folder, self.METADATA_NAME),
                [folder],
            )
            for _, folder in self._checkpoints()
        ]
        # Keras' own layout (its latest files, then its double_checkpoint copies).
        for suffix in ("", ".bkp"):
            weights = self._weights_path + suffix
            metadata = self._training_metadata_path + suffix
            if os.path.exists(weights) or os.path.exists(metadata):
                candidates.append((weights, metadata, [weights, metadata]))
        return candidates

    def _read_metadata(self, path):
        with open(path) as f:
            metadata = json.load(f)
        epoch = metadata.get("epoch") if isinstance(metadata, dict) else None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ValueError(f"no valid 'epoch' (an int >= 0) in {metadata!r}")
        return metadata

    def _load_weights(self, path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing")
        if path.endswith(".weights.h5"):
            self.model.load_weights(path)
            return
        # Keras' `.bkp` copies: `load_weights` takes only names ending in `.weights.h5`.
        copy = os.path.join(self.backup_dir, f"{self.TEMPORARY_PREFIX}restore-{os.getpid()}")
        os.makedirs(copy, exist_ok=True)
        try:
            shutil.copyfile(path, os.path.join(copy, self.WEIGHTS_NAME))
            self.model.load_weights(os.path.join(copy, self.WEIGHTS_NAME))
        finally:
            shutil.rmtree(copy, ignore_errors=True)

    def _state_variables(self):
        variables = list(self.model.variables)
        if self.model.optimizer is not None:
            variables += list(self.model.optimizer.variables)
        return variables

    def on_train_begin(self, logs=None):
        if not self.model.built:
            raise ValueError(
                "To use the AtomicBackupAndRestore callback, the model must be built before "
                f"`fit()`. Model {self.model} is unbuilt: build it beforehand, e.g. by "
                "calling it on a batch of data."
            )
        self._remove_temporary_folders()
        candidates = self._candidates()
        if not candidates:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            # The optimizer's variables must exist for its state to be restored.
            self.model.optimizer.build(self.model.trainable_variables)
        variables = self._state_variables()
        initial = [variable.numpy() for variable in variables]
        damaged = []
        for weights, metadata_path, files in candidates:
            try:
                metadata = self._read_metadata(metadata_path)
                self._load_weights(weights)
            except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
                damaged.append(files)
                # The first line: Keras' load errors go on to print whole variables.
                reason = (str(error).strip().splitlines() or [""])[0][:300]
                warnings.warn(
                    f"Cannot restore the backup {weights} with {metadata_path} "
                    f"({type(error).__name__}: {reason}); it is deleted, and the previous "
                    "backup is tried.",
                )
                continue
            self.model._initial_epoch = metadata["epoch"]
            self._current_epoch = metadata["epoch"]
            logs = metadata.get("logs")
            self.restored_logs = dict(logs) if isinstance(logs, dict) else None
            break
        else:
            # A damaged file may have been half loaded: back to the initial state.
            for variable, value in zip(variables, initial):
                variable.assign(value)
            warnings.warn(
                f"No backup in {self.backup_dir} could be restored ({len(candidates)} "
                "damaged, named above): training starts from scratch.",
            )
        for files in damaged:
            self._delete(files)

    # Saving.

    def on_epoch_end(self, epoch, logs=None):
        self._epoch_logs = {}
        for name, value in (logs or {}).items():
            if np.ndim(value) == 0:
                try:
                    self._epoch_logs[name] = float(value)
                except (TypeError, ValueError):
                    pass  # not a number
        super().on_epoch_end(epoch, logs)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        checkpoints = self._checkpoints()
        number = checkpoints[0][0] + 1 if checkpoints else 1
        temporary = os.path.join(
            self.backup_dir, f"{self.TEMPORARY_PREFIX}{number}-{os.getpid()}"
        )
        final = os.path.join(self.backup_dir, f"{self.CHECKPOINT_PREFIX}{number:08d}")
        try:
            os.makedirs(temporary)
            weights = os.path.join(temporary, self.WEIGHTS_NAME)
            self.model.save_weights(weights, overwrite=True)
            _fsync(weights)
            metadata = {
                "epoch": self._current_epoch,
                "batch": self._last_batch_seen,
                "logs": self._epoch_logs if self.save_freq == "epoch" else None,
            }
            metadata_path = os.path.join(temporary, self.METADATA_NAME)
            with open(metadata_path, "w") as f:
                json.dump(metadata, f)
                f.flush()
                os.fsync(f.fileno())
            _fsync(temporary)
            os.rename(temporary, final)
            _fsync(self.backup_dir)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        for _, folder in checkpoints[self.keep - 1:]:
            shutil.rmtree(folder, ignore_errors=True)
        # A backup of Keras' layout is older than the one just written.
        self._delete(
            [path + suffix for path in (self._weights_path, self._training_metadata_path)
             for suffix in ("", ".bkp")]
        )

    def on_train_end(self, logs=None):
        if self.delete_checkpoint:
            shutil.rmtree(self.backup_dir, ignore_errors=True)

    # Helpers.

    def _remove_temporary_folders(self):
        if os.path.isdir(self.backup_dir):
            for name in os.listdir(self.backup_dir):
                if name.startswith(self.TEMPORARY_PREFIX):
                    shutil.rmtree(os.path.join(self.backup_dir, name), ignore_errors=True)

    @staticmethod
    def _delete(paths):
        for path in paths:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.lexists(path):
                os.remove(path)


def _fsync(path):
    """Flushes a file (or a folder's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
