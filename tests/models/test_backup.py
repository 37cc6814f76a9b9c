"""`AtomicBackupAndRestore`: resumes exactly, never fails on a damaged or half-written backup.

Keras' `BackupAndRestore` (0.1.0's recipes and until now) overwrites its files in place: a
kill during the first write, a full disk, or an empty `training_metadata.json` next to a good
`.bkp` made every later `fit` fail (`OSError: truncated file: eof = 96`, `JSONDecodeError`).
Each test here damages the files as such an event would and checks that the next `fit`
resumes from the newest good backup (or from scratch, with a warning naming the file) and ends
with exactly the weights of an uninterrupted run. `tests/recipes/test_kill_restart.py` does
the same with real `SIGKILL`s of recipe subprocesses.
"""

import contextlib
import errno
import json
import os
import re
import signal
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_contrast as kc

EPOCHS = 4
X = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
Y = np.random.default_rng(1).normal(size=(32, 3)).astype("float32")


def make_model(units=8):
    """A small regression model with momentum state, the same initial weights every time."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(3)]
    )
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9), "mse")
    return model


class StopAt(keras.callbacks.Callback):
    """Interrupts `fit` at the start of an epoch, as a kill between two epochs would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt(f"stopped at epoch {epoch}")


def fit(model, callbacks, epochs=EPOCHS):
    return model.fit(X, Y, batch_size=8, epochs=epochs, shuffle=False, verbose=0,
                     callbacks=callbacks)


def state(model):
    """The weights and the optimizer's variables (momentum buffers, iterations)."""
    return [np.array(v) for v in model.weights] + [np.array(v) for v in model.optimizer.variables]


def assert_same_state(model, expected):
    got = state(model)
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def uninterrupted():
    """State and history of an uninterrupted `EPOCHS`-epoch run (no callback)."""
    model = make_model()
    history = fit(model, []).history
    return state(model), history


def interrupted_run(backup_dir, stop_at, **kwargs):
    """Trains until `stop_at` epochs have ended (and been backed up), then interrupts."""
    model = make_model()
    backup = kc.models.AtomicBackupAndRestore(backup_dir, **kwargs)
    with pytest.raises(KeyboardInterrupt):
        fit(model, [backup, StopAt(stop_at)])
    return model


def resume(backup_dir, **kwargs):
    """A new process's `fit`: a fresh model and callback on the same folder."""
    model = make_model()
    backup = kc.models.AtomicBackupAndRestore(backup_dir, **kwargs)
    history = fit(model, [backup]).history
    return model, backup, history


@contextlib.contextmanager
def no_backup_warning():
    """Fails if the callback warns (about a damaged backup or a fresh start)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    ours = [str(w.message) for w in caught if "backup" in str(w.message).lower()]
    assert not ours, ours


def checkpoints(backup_dir):
    return sorted(n for n in os.listdir(backup_dir) if n.startswith("checkpoint-"))


def test_resume_ends_with_the_uninterrupted_state(tmp_path, uninterrupted):
    expected, expected_history = uninterrupted
    interrupted_run(tmp_path / "b", stop_at=2)
    with no_backup_warning():  # nothing is damaged
        model, backup, history = resume(tmp_path / "b")
    assert len(history["loss"]) == EPOCHS - 2  # epochs 3 and 4 only
    np.testing.assert_allclose(history["loss"], expected_history["loss"][2:], rtol=1e-6)
    assert_same_state(model, expected)
    # The second epoch's loss comes back with the backup (a run resumed after its last
    # epoch reports it).
    assert backup.restored_logs["loss"] == pytest.approx(expected_history["loss"][1], rel=1e-6)
    assert not os.path.exists(tmp_path / "b")  # delete_checkpoint=True by default


def test_each_backup_is_one_complete_folder_and_keep_bounds_them(tmp_path):
    model = make_model()
    fit(model, [kc.models.AtomicBackupAndRestore(tmp_path, keep=2, delete_checkpoint=False)])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-00000003", "checkpoint-00000004"]
    for name, epoch in (("checkpoint-00000003", 3), ("checkpoint-00000004", 4)):
        assert sorted(os.listdir(tmp_path / name)) == ["latest.weights.h5",
                                                        "training_metadata.json"]
        metadata = json.loads((tmp_path / name / "training_metadata.json").read_text())
        assert metadata["epoch"] == epoch and np.isfinite(metadata["logs"]["loss"])


def test_a_run_resumed_after_its_last_epoch_trains_nothing(tmp_path, uninterrupted):
    expected, expected_history = uninterrupted
    fit(make_model(), [kc.models.AtomicBackupAndRestore(tmp_path, delete_checkpoint=False)])
    model, backup, history = resume(tmp_path)
    assert history == {}
    assert_same_state(model, expected)
    assert backup.restored_logs["loss"] == pytest.approx(expected_history["loss"][-1], rel=1e-6)


def truncate(path, size=96):
    with open(path, "r+b") as f:
        f.truncate(size)


DAMAGES = {
    "empty metadata": lambda d: open(d / "training_metadata.json", "w").close(),
    "truncated metadata": lambda d: (d / "training_metadata.json").write_text('{"epoch": 3, "ba'),
    "metadata without an epoch": lambda d: (d / "training_metadata.json").write_text("{}"),
    "metadata with a negative epoch": lambda d: (d / "training_metadata.json").write_text(
        '{"epoch": -1}'),
    "metadata missing": lambda d: os.remove(d / "training_metadata.json"),
    "weights truncated to the HDF5 header": lambda d: truncate(d / "latest.weights.h5"),
    "weights truncated by half": lambda d: truncate(
        d / "latest.weights.h5", os.path.getsize(d / "latest.weights.h5") // 2),
    "weights empty": lambda d: truncate(d / "latest.weights.h5", 0),
    "weights missing": lambda d: os.remove(d / "latest.weights.h5"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_newest_backup_falls_back_to_the_previous_one(tmp_path, uninterrupted,
                                                               damage):
    expected, expected_history = uninterrupted
    interrupted_run(tmp_path, stop_at=3)
    newest = tmp_path / checkpoints(tmp_path)[-1]
    DAMAGES[damage](newest)
    with pytest.warns(UserWarning, match=re.escape(str(newest / "latest.weights.h5"))):
        model, backup, history = resume(tmp_path, delete_checkpoint=False)
    assert len(history["loss"]) == EPOCHS - 2  # from the second epoch's backup
    assert_same_state(model, expected)
    assert backup.restored_logs["loss"] == pytest.approx(expected_history["loss"][1], rel=1e-6)
    assert checkpoints(tmp_path) == ["checkpoint-00000003", "checkpoint-00000004"]


def test_no_restorable_backup_starts_from_scratch_with_the_initial_weights(tmp_path,
                                                                          uninterrupted):
    """A file that loads partly must not leave its weights behind in a fresh start."""
    expected, _ = uninterrupted
    interrupted_run(tmp_path, stop_at=1, keep=1)
    (only,) = checkpoints(tmp_path)
    # The first layer's weights load, the second's shapes do not match: half loaded.
    other = make_model()
    other.pop()
    other.add(keras.layers.Dense(5))
    other.fit(X, np.zeros((32, 5)), epochs=1, verbose=0)
    other.save_weights(tmp_path / only / "latest.weights.h5")
    with pytest.warns(UserWarning, match="training starts from scratch"):
        model, backup, history = resume(tmp_path)
    assert len(history["loss"]) == EPOCHS
    assert backup.restored_logs is None
    assert_same_state(model, expected)


def test_a_kill_during_the_first_write_leaves_a_folder_that_is_ignored(tmp_path,
                                                                       uninterrupted):
    """SIGKILL while the first backup is written: only a temporary folder, half written."""
    expected, _ = uninterrupted
    model = make_model()
    fit(model, [], epochs=1)
    temporary = tmp_path / ".tmp-checkpoint-1-12345"
    temporary.mkdir()
    model.save_weights(temporary / "latest.weights.h5")
    truncate(temporary / "latest.weights.h5")
    with no_backup_warning():
        model, _, history = resume(tmp_path, delete_checkpoint=False)
    assert len(history["loss"]) == EPOCHS
    assert_same_state(model, expected)
    assert not temporary.exists()


def test_a_failed_write_keeps_the_previous_backup(tmp_path, uninterrupted, monkeypatch):
    """A write that fails half-way (disk full): the error propagates, nothing is left over."""
    expected, _ = uninterrupted
    model = make_model()
    save_weights = model.save_weights
    calls = []

    def fail_on_third_call(path, **kwargs):
        calls.append(path)
        save_weights(path, **kwargs)
        if len(calls) == 3:
            truncate(path, os.path.getsize(path) // 2)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(model, "save_weights", fail_on_third_call)
    with pytest.raises(OSError, match="No space left on device"):
        fit(model, [kc.models.AtomicBackupAndRestore(tmp_path)])
    assert sorted(os.listdir(tmp_path)) == ["checkpoint-00000001", "checkpoint-00000002"]
    with no_backup_warning():
        model, _, history = resume(tmp_path)
    assert len(history["loss"]) == EPOCHS - 2
    assert_same_state(model, expected)


def train_until_the_disk_is_full(backup_dir):
    """Trains with backups; from the third epoch on no file can grow past 2 KB (RLIMIT_FSIZE).

    Run in a subprocess by the test below: HDF5 may raise or crash the process (it
    segfaults on EFBIG), as it may on a real full disk.
    """
    import resource

    class FillDiskAt(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.RLIM_INFINITY))

    fit(make_model(), [FillDiskAt(), kc.models.AtomicBackupAndRestore(backup_dir)])


@pytest.mark.slow
def test_a_full_disk_keeps_the_previous_backup(tmp_path, uninterrupted):
    """A real failing write (the kernel refuses to grow the file), in a subprocess."""
    pytest.importorskip("resource")
    expected, _ = uninterrupted
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = "import sys; from tests.models import test_backup; " \
           "test_backup.train_until_the_disk_is_full(sys.argv[1])"
    env = {**os.environ, "PYTHONPATH": repo, "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=env, cwd=repo)
    assert proc.returncode != 0, "the write did not fail"
    assert "checkpoint-00000003" not in os.listdir(tmp_path), proc.stderr[-2000:]
    assert checkpoints(tmp_path) == ["checkpoint-00000001", "checkpoint-00000002"]
    with no_backup_warning():
        model, _, history = resume(tmp_path)
    assert len(history["loss"]) == EPOCHS - 2
    assert_same_state(model, expected)
    assert not os.path.exists(tmp_path)  # the half-written temporary folder too


def keras_backups(backup_dir, stop_at):
    """Backups of `keras.callbacks.BackupAndRestore(double_checkpoint=True)` (0.1.0's)."""
    model = make_model()
    backup = keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True)
    with pytest.raises(KeyboardInterrupt):
        fit(model, [backup, StopAt(stop_at)])
    assert sorted(os.listdir(backup_dir)) == [
        "latest.weights.h5", "latest.weights.h5.bkp", "training_metadata.json",
        "training_metadata.json.bkp"]


def test_a_backup_written_by_keras_is_resumed(tmp_path, uninterrupted):
    expected, _ = uninterrupted
    keras_backups(tmp_path, stop_at=3)
    model, _, history = resume(tmp_path, delete_checkpoint=False)
    assert len(history["loss"]) == EPOCHS - 3
    assert_same_state(model, expected)
    assert checkpoints(tmp_path) == os.listdir(tmp_path)  # Keras' files are gone


@pytest.mark.parametrize("content", ["", '{"epoch": 3, "batc'])
def test_keras_metadata_damaged_next_to_a_good_bkp(tmp_path, uninterrupted, content):
    """Keras' callback raises JSONDecodeError here at every start; this falls back to `.bkp`."""
    expected, _ = uninterrupted
    keras_backups(tmp_path, stop_at=3)
    (tmp_path / "training_metadata.json").write_text(content)
    with pytest.warns(UserWarning, match=re.escape(str(tmp_path / "training_metadata.json"))):
        model, _, history = resume(tmp_path)
    assert len(history["loss"]) == EPOCHS - 2  # the .bkp pair holds the second epoch
    assert_same_state(model, expected)


def test_keras_first_write_killed_starts_from_scratch(tmp_path, uninterrupted):
    """Keras' callback raises `truncated file: eof = 96` here at every start."""
    expected, _ = uninterrupted
    keras_backups(tmp_path, stop_at=3)
    for name in ("latest.weights.h5.bkp", "training_metadata.json.bkp",
                 "training_metadata.json"):
        os.remove(tmp_path / name)
    truncate(tmp_path / "latest.weights.h5")
    with pytest.warns(UserWarning, match=re.escape(str(tmp_path / "latest.weights.h5"))):
        model, _, history = resume(tmp_path)
    assert len(history["loss"]) == EPOCHS
    assert_same_state(model, expected)


def test_batch_level_backups_resume_at_their_epoch(tmp_path):
    model = make_model()
    fit(model, [kc.models.AtomicBackupAndRestore(tmp_path, save_freq=3, keep=1,
                                                delete_checkpoint=False)], epochs=2)
    (name,) = checkpoints(tmp_path)
    metadata = json.loads((tmp_path / name / "training_metadata.json").read_text())
    # 8 batches in 2 epochs: saved after batches 3 and 6, i.e. the 2nd batch of epoch 2.
    assert (metadata["epoch"], metadata["batch"], metadata["logs"]) == (1, 1, None)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(backup_dir=""), "`backup_dir` must be a non-empty path. Received: backup_dir=''"),
        (dict(backup_dir=None), "`backup_dir` must be a non-empty path"),
        (dict(backup_dir="gs://bucket/run"), "`backup_dir` must be on a local file system"),
        (dict(keep=0), "`keep` must be an int >= 1. Received: keep=0"),
        (dict(keep=True), "`keep` must be an int >= 1. Received: keep=True"),
        (dict(save_freq=0), "`save_freq` must be 'epoch' or an int >= 1. Received: save_freq=0"),
        (dict(save_freq="batch"), "Received: save_freq='batch'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    kwargs = {"backup_dir": str(tmp_path), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message)):
        kc.models.AtomicBackupAndRestore(**kwargs)


def test_unbuilt_model_is_refused(tmp_path):
    model = keras.Sequential([keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    with pytest.raises(ValueError, match="the model must be built before `fit"):
        model.fit(X, Y, epochs=1, verbose=0,
                  callbacks=[kc.models.AtomicBackupAndRestore(tmp_path)])
