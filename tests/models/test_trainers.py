"""Every trainer base x add-on: logged terms, learning, distribution, saving, errors.

Bases: `SimCLRModel`, `SupConModel` (in-batch and with a labelled queue), `MoCoModel`,
`BYOLModel`; add-ons: none, `CLSA`, `MixCo`, both. The models are tiny (one conv layer, an
8-d head) and the data is fixed (no random augmentation), so that the comparisons below are
exact and the file stays fast. Tracing a train step costs ~2 s here while a step costs
~10 ms: each trained model is built and fitted once (`trained`) and shared by the tests that
only read it (or train it further without relying on its exact state), and the tests that
need several fresh models for one or two steps run them eagerly.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_contrast as kc
from keras_contrast import objectives
from tests import harness
from tests.models import trainer_fixtures as fx

COMBINATIONS = [(base, kind) for base in fx.BASES for kind in fx.ADD_ONS]
TRAIN_VIEWS = fx.views(32)  # 4 batches of 8: a 16-key queue never holds a batch's own keys
WARM_UP_EPOCHS = 2
EPOCHS = 12
LEARNING_RATE = 0.03


def compile_trainer(model, learning_rate=LEARNING_RATE, **kwargs):
    # A probe optimizer with momentum, so that it has state that saving must keep.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        probe_optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
        **kwargs,
    )
    return model


class _Trained:
    """Trainers fitted on `TRAIN_VIEWS`, built on first request, with their histories.

    Each first runs `WARM_UP_EPOCHS` epochs with the learning rate at 0: the weights stay
    the initial ones while the queue fills with their keys, so the last warm-up epoch
    measures the loss of the initial weights (in training mode, like the fit that follows).
    Then `EPOCHS` epochs at `LEARNING_RATE`.

    Models are built inside the requesting test (after its seeding), so every test sees
    the same model whichever test asks first.
    """

    def __init__(self):
        self._cache = {}

    def __call__(self, base, kind):
        if (base, kind) not in self._cache:
            model = compile_trainer(fx.make_trainer(base, kind))
            data = fx.dataset(TRAIN_VIEWS)
            model.optimizer.learning_rate.assign(0.0)
            warm_up = model.fit(data, epochs=WARM_UP_EPOCHS, verbose=0).history
            model.optimizer.learning_rate.assign(LEARNING_RATE)
            history = model.fit(data, epochs=EPOCHS, verbose=0).history
            self._cache[base, kind] = model, warm_up, history
        return self._cache[base, kind]


@pytest.fixture(scope="module")
def trained():
    return _Trained()


def expected_terms(base, kind):
    return {
        "loss", fx.BASE_TERM[base], *fx.ADD_ON_TERMS[kind], "z_std", "probe_loss",
        "probe_accuracy",
    }


def weighted_total(logs, base, kind):
    """`base term + sum of weight * add-on term`, from logged values."""
    total = np.asarray(logs[fx.BASE_TERM[base]], "float64")
    for term in fx.ADD_ON_TERMS[kind]:
        total = total + fx.TERM_WEIGHT[term] * np.asarray(logs[term], "float64")
    return total


def snapshot(model):
    """Every variable of the model and of both optimizers, as `(name, value)` in order.

    Compared by position, not by path: paths (and the optimizer slot names made from them)
    depend on the order models were built in (`sequential_3/...`), the momentum encoder's
    variables share the online encoder's paths (a `clone_model` copy keeps its layer
    names), and a loaded encoder's variables lose their `sequential/` prefix.
    """
    variables = list(model.variables) + list(model.optimizer.variables)
    if model.probe_optimizer is not None:
        variables += list(model.probe_optimizer.variables)
    return [(v.name, np.array(v.numpy(), copy=True)) for v in variables]


def assert_same_state(actual, expected, atol=0.0):
    """Compares two `snapshot`s: as many variables, equal shapes, dtypes and values."""
    assert len(actual) == len(expected)
    for index, ((name, a), (other, b)) in enumerate(zip(actual, expected)):
        where = f"variable {index}: {name} / {other}"
        assert (a.shape, a.dtype) == (b.shape, b.dtype), where
        np.testing.assert_allclose(a, b, atol=atol, rtol=0, err_msg=where)


def one_batch(views, n=fx.BATCH):
    return fx.dataset({k: v[:n] for k, v in views.items()})


def numpy_probe_metrics(model, images, labels):
    """Accuracy and mean cross-entropy of the probe, from the model's probabilities."""
    probabilities = np.asarray(model(images)["probabilities"], "float64")
    accuracy = np.mean(np.argmax(probabilities, axis=-1) == labels)
    cross_entropy = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
    return accuracy, cross_entropy


# -- every base x add-on: terms, decomposition, learning --------------------------------


@pytest.mark.parametrize("base, kind", COMBINATIONS, ids=[f"{b}-{k}" for b, k in COMBINATIONS])
def test_fit_logs_every_term_finite_the_total_adds_up_and_the_loss_falls(base, kind, trained):
    _, warm_up, history = trained(base, kind)
    assert set(history) == expected_terms(base, kind)
    for name, values in history.items():
        assert len(values) == EPOCHS and np.all(np.isfinite(values)), (name, values)
    # z_std is the mean std of unit vectors in 8-d: within (0, 1/sqrt(8)] by Jensen.
    assert all(0.0 < s <= 1.0 / math.sqrt(8) + 1e-6 for s in history["z_std"])
    assert all(0.0 <= a <= 1.0 for a in history["probe_accuracy"])
    # The epoch logs are means over the same batches, so the identity holds for them too.
    np.testing.assert_allclose(history["loss"], weighted_total(history, base, kind), rtol=1e-5)
    np.testing.assert_allclose(warm_up["loss"], weighted_total(warm_up, base, kind), rtol=1e-5)
    # Fixed data: the total falls below the initial weights' loss. The mean of two epochs
    # smooths BYOL's non-monotone course and MixCo's random mixing weights.
    assert np.mean(history["loss"][-2:]) < 0.95 * warm_up["loss"][-1], (warm_up, history)


# -- evaluate ------------------------------------------------------------------------


@pytest.mark.parametrize("base", fx.BASES)
def test_evaluate_is_repeatable_leaves_every_variable_and_adds_up(base, trained):
    model, _, _ = trained(base, "both")
    batch = one_batch(fx.views(seed=5))
    before = snapshot(model)
    first = model.evaluate(batch, verbose=0, return_dict=True)
    second = model.evaluate(batch, verbose=0, return_dict=True)
    # BN statistics, queue, pointer, labels, momentum nets, seed state, optimizer slots.
    assert_same_state(snapshot(model), before)
    assert first == second  # a fixed evaluation seed: MixCo mixes the same way each time
    assert set(first) == expected_terms(base, "both")
    assert all(np.isfinite(v) for v in first.values())
    np.testing.assert_allclose(first["loss"], weighted_total(first, base, "both"), rtol=1e-5)


@pytest.mark.parametrize("base", fx.BASES)
def test_evaluate_probe_metrics_and_z_std_match_the_model_outputs(base, trained):
    model, _, _ = trained(base, "both")
    views = fx.views(seed=5)
    logs = model.evaluate(one_batch(views), verbose=0, return_dict=True)
    accuracy, cross_entropy = numpy_probe_metrics(model, views["query"], views["labels"])
    np.testing.assert_allclose(logs["probe_accuracy"], accuracy, atol=1e-6)
    np.testing.assert_allclose(logs["probe_loss"], cross_entropy, rtol=1e-5, atol=1e-6)
    # z_std: mean over dimensions of the (population) std over the batch of the
    # projections, which inference-mode BatchNorm makes equal to those of `model(images)`.
    projections = np.asarray(model(views["query"])["projections"], "float64")
    np.testing.assert_allclose(logs["z_std"], projections.std(axis=0).mean(), rtol=1e-4)


def test_evaluate_on_plain_labelled_images_reports_only_the_probe(trained):
    model, _, _ = trained("moco", "both")
    views = fx.views(16, seed=7)  # two batches: the metrics must cover both
    logs = model.evaluate(
        views["query"], views["labels"], batch_size=fx.BATCH, verbose=0, return_dict=True
    )
    assert set(logs) == {"probe_loss", "probe_accuracy"}
    accuracy, cross_entropy = numpy_probe_metrics(model, views["query"], views["labels"])
    np.testing.assert_allclose(logs["probe_accuracy"], accuracy, atol=1e-6)
    np.testing.assert_allclose(logs["probe_loss"], cross_entropy, rtol=1e-5, atol=1e-6)


def test_fit_with_validation_images_logs_the_probe(trained):
    model, _, _ = trained("supcon_queue", "both")
    val = fx.views(16, seed=9)
    history = model.fit(
        fx.dataset(TRAIN_VIEWS), epochs=1, verbose=0,
        validation_data=(val["query"], val["labels"]),
    ).history
    assert {"val_probe_accuracy", "val_probe_loss"} <= set(history)
    assert set(history) - {"val_probe_accuracy", "val_probe_loss"} == expected_terms(
        "supcon_queue", "both"
    )
    # Validation runs after the epoch's last step: the model as it is now.
    accuracy, cross_entropy = numpy_probe_metrics(model, val["query"], val["labels"])
    np.testing.assert_allclose(history["val_probe_accuracy"][0], accuracy, atol=1e-6)
    np.testing.assert_allclose(
        history["val_probe_loss"][0], cross_entropy, rtol=1e-5, atol=1e-6
    )


# -- saving: .keras and BackupAndRestore ---------------------------------------------


@pytest.mark.parametrize("base", fx.BASES)
def test_keras_file_keeps_every_variable_and_both_optimizers(base, trained, tmp_path):
    model, _, _ = trained(base, "both")
    path = str(tmp_path / f"{base}.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is type(model)
    # Weights, BN statistics, queue keys / labels / pointer, momentum nets, probe, seed
    # state; the optimizer's and the probe optimizer's slots and iteration counters.
    assert_same_state(snapshot(restored), snapshot(model))
    assert len(model.probe_optimizer.variables) > 2  # momentum slots, not only counters
    assert type(restored.probe_optimizer) is type(model.probe_optimizer)
    assert restored.probe_optimizer.get_config() == model.probe_optimizer.get_config()
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    assert [a.get_config() for a in restored.add_ons] == [a.get_config() for a in model.add_ons]
    images = fx.views(seed=11)["query"]
    expected, actual = model(images), restored(images)
    assert set(actual) == {"embeddings", "projections", "probabilities"}
    for key in expected:
        np.testing.assert_allclose(actual[key], expected[key], atol=1e-6, err_msg=key)
    harness.assert_config_round_trip(model)


class _InterruptAtEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("Interrupting training")


@pytest.mark.parametrize("base", fx.BASES)
def test_backup_and_restore_resumes_exactly(base, tmp_path):
    # MoCo with bn_splits=2 and both add-ons: the resumed run must replay the same shuffles
    # and mixing weights, so the trainer's seed state must be restored too. One batch per
    # epoch, eager steps (three fresh models, two steps each: cheaper than three traces).
    data = fx.dataset(fx.views())
    options = {"bn_splits": 2} if base == "moco" else {}

    def fresh(seed):
        keras.utils.set_random_seed(seed)
        return compile_trainer(fx.make_trainer(base, "both", **options), run_eagerly=True)

    uninterrupted = fresh(3)
    uninterrupted.fit(data, epochs=2, verbose=0)

    backup = str(tmp_path / "backup")
    interrupted = fresh(3)
    with pytest.raises(RuntimeError, match="Interrupting training"):
        interrupted.fit(
            data, epochs=2, verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup), _InterruptAtEpoch(1)],
        )
    after_one_epoch = snapshot(interrupted)

    resumed = fresh(4)  # other initial weights: only the backup can make it match
    initial = snapshot(resumed)
    history = resumed.fit(
        data, epochs=2, verbose=0, callbacks=[keras.callbacks.BackupAndRestore(backup)]
    )
    assert history.epoch == [1]  # resumed at the second epoch
    assert_same_state(snapshot(resumed), snapshot(uninterrupted), atol=1e-6)
    # Guards that the comparison can fail: one epoch and a fresh model differ from two.
    for other in (after_one_epoch, initial):
        assert max(
            np.max(np.abs(a - b)) for (_, a), (_, b) in zip(other, snapshot(uninterrupted))
        ) > 1e-4


# -- MirroredStrategy equals one device ------------------------------------------------


def _replica_values(variable):
    value = variable.value
    components = getattr(value, "values", None)
    return [np.asarray(c) for c in components] if components else [np.asarray(value)]


@pytest.mark.parametrize("base", fx.BASES)
def test_one_fit_step_under_mirrored_strategy_equals_one_device(base):
    # What could make 2 replicas of 4 differ from one device on the global batch of 8, and
    # how it is controlled:
    # - BatchNorm normalises with per-replica statistics: the encoder has no BatchNorm (the
    #   heads and predictor have none either).
    # - MixCo draws per-replica mixing weights (the replica id is folded into the seed):
    #   the add-on is CLSA, which is deterministic.
    # - MoCo shuffles the keys (shuffle-BN): kept on, since without BatchNorm the key
    #   encoder is per-sample, so the shuffle changes nothing unless the keys come back in
    #   the wrong order; one split.
    # - The queue receives the gathered keys in replica order = the one-device order, and
    #   its initial keys, like every weight, are copied from the one-device model.
    # - Adam's first step is ~lr * sign(gradient) and would hide a gradient scale error:
    #   SGD without momentum, for the main and the probe optimizer.
    strategy = harness.mirrored_strategy()
    data = fx.dataset(fx.views())  # one global batch of 8
    options = {"shuffle_bn": True, "bn_splits": 1} if base == "moco" else {}

    def build(**compile_options):
        model = fx.make_trainer(base, "clsa", batch_norm=False, **options)
        model.compile(
            optimizer=keras.optimizers.SGD(0.5),
            probe_optimizer=keras.optimizers.SGD(0.5),
            **compile_options,
        )
        return model

    single = build(run_eagerly=True)  # one step: cheaper than a trace
    with strategy.scope():
        mirrored = build()
    mirrored.set_weights(single.get_weights())
    initial = [np.array(w) for w in single.get_weights()]

    views = fx.views()
    projections = np.asarray(single(views["query"])["projections"], "float64")  # before
    # The momentum network starts as a copy of the online one: these are its first keys.
    keys = np.asarray(single(views["key"])["projections"])
    online = [single.encoder, single.head]
    initial_online = [np.array(w) for layer in online for w in layer.weights]
    features = np.asarray(single.encoder(views["query"]), "float64")
    probe_kernel, probe_bias = (np.array(w, "float64") for w in single.probe.weights)

    single_logs = single.fit(data, epochs=1, verbose=0).history
    mirrored_logs = mirrored.fit(data, epochs=1, verbose=0).history

    assert set(mirrored_logs) == set(single_logs) == expected_terms(base, "clsa")
    for name, value in single_logs.items():
        if name != "z_std":
            np.testing.assert_allclose(mirrored_logs[name], value, rtol=1e-5, err_msg=name)
    # z_std is a per-replica statistic: the std over each replica's 4 projections,
    # averaged over replicas.
    halves = [projections[:4].std(axis=0).mean(), projections[4:].std(axis=0).mean()]
    np.testing.assert_allclose(mirrored_logs["z_std"], np.mean(halves), rtol=1e-5)
    np.testing.assert_allclose(single_logs["z_std"], projections.std(axis=0).mean(), rtol=1e-5)
    changed = 0
    for ours, theirs, start in zip(mirrored.weights, single.weights, initial):
        expected = np.asarray(theirs)
        changed += int(np.max(np.abs(expected - start)) > 1e-3) if expected.size else 0
        for component in _replica_values(ours):  # every replica holds the same value
            np.testing.assert_allclose(component, expected, atol=1e-5, err_msg=theirs.path)
    assert changed >= 4  # the step moved encoder, head and probe weights
    # The probe: one SGD(0.5) step of the mean softmax cross-entropy on the query features.
    logits = features @ probe_kernel + probe_bias
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    error = (softmax - np.eye(fx.NUM_CLASSES)[views["labels"]]) / fx.BATCH
    np.testing.assert_allclose(
        single.probe.kernel, probe_kernel - 0.5 * features.T @ error, atol=1e-5
    )
    np.testing.assert_allclose(single.probe.bias, probe_bias - 0.5 * error.sum(0), atol=1e-5)
    if hasattr(single, "momentum_encoder"):
        # One EMA step with momentum 0.9 (BYOL: tau at step 0 of the cosine schedule is
        # its base momentum), from the common initial weights to the updated online ones.
        momentum = [single.momentum_encoder, single.momentum_head]
        pairs = zip(
            [w for layer in momentum for w in layer.weights],
            [w for layer in online for w in layer.weights],
            initial_online,
        )
        for target, source, start in pairs:
            expected = 0.9 * start + 0.1 * np.asarray(source)
            np.testing.assert_allclose(target, expected, atol=1e-6, err_msg=target.path)
    if getattr(single, "queue", None) is not None:
        assert int(np.asarray(single.queue.pointer)) == fx.BATCH
        np.testing.assert_allclose(np.asarray(single.queue.queue)[: fx.BATCH], keys, atol=1e-6)
        if single.queue.labels is not None:
            np.testing.assert_array_equal(
                np.asarray(single.queue.labels)[: fx.BATCH], views["labels"]
            )


# -- mixed precision -----------------------------------------------------------------


@pytest.fixture
def policy(request):
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"], indirect=True)
@pytest.mark.parametrize("base", fx.BASES)
def test_mixed_precision_fit_gives_finite_terms(base, policy):
    model = compile_trainer(fx.make_trainer(base, "both"), run_eagerly=True)
    assert model.encoder.layers[1].compute_dtype == policy.split("_")[1]
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    history = model.fit(fx.dataset(fx.views()), epochs=1, verbose=0).history
    assert set(history) == expected_terms(base, "both")
    for name, values in history.items():
        assert np.all(np.isfinite(values)), (name, values)
    for variable in model.variables:
        assert variable.dtype not in ("float16", "bfloat16"), variable.path  # float32 state
        if variable.dtype.startswith("float"):
            assert np.all(np.isfinite(np.asarray(variable))), variable.path


# -- errors ----------------------------------------------------------------------------


def _fit(model, batch_views, batch_size=fx.BATCH):
    model.fit(fx.dataset(batch_views, batch_size), epochs=1, verbose=0)


@pytest.fixture(scope="module")
def simclr():
    return compile_trainer(fx.make_trainer("simclr", "none"))


def test_bad_batch_formats(simclr):
    views = fx.views()
    q, k = views["query"], views["key"]
    with pytest.raises(ValueError, match=r"expects batches .*Received keys: \['query'\]"):
        _fit(simclr, {"query": q})
    with pytest.raises(ValueError, match=r"Received keys: \['extra', 'key', 'query'\]"):
        _fit(simclr, {"query": q, "key": k, "extra": q})
    with pytest.raises(ValueError, match="Labels were given twice"):
        dataset = tf.data.Dataset.from_tensor_slices(
            ({"query": q, "key": k, "labels": views["labels"]}, views["labels"])
        ).batch(fx.BATCH)
        simclr.fit(dataset, verbose=0)
    with pytest.raises(ValueError, match="no sample weights"):
        simclr.fit(
            tf.data.Dataset.from_tensor_slices(
                ({"query": q, "key": k}, views["labels"], np.ones(8, "float32"))
            ).batch(fx.BATCH),
            verbose=0,
        )
    with pytest.raises(ValueError, match=r"static V >= 2.*views.shape=\(None, 1, 12, 12, 3\)"):
        simclr.fit(tf.data.Dataset.from_tensor_slices(q[:, None]).batch(fx.BATCH), verbose=0)
    with pytest.raises(ValueError, match=r"`labels` must be int class ids.*float32"):
        _fit(simclr, {"query": q, "key": k, "labels": views["labels"].astype("float32")})
    with pytest.raises(ValueError, match="expects batches"):
        simclr.fit(tf.data.Dataset.from_tensor_slices(q[:, 0]).batch(fx.BATCH), verbose=0)


def test_batches_an_add_on_or_base_cannot_use():
    views = fx.views()
    clsa = compile_trainer(fx.make_trainer("moco", "clsa"))
    with pytest.raises(ValueError, match="CLSA add-on needs strong views.*'strong'"):
        _fit(clsa, {"query": views["query"], "key": views["key"]})
    mixco = compile_trainer(fx.make_trainer("simclr", "mixco"))
    with pytest.raises(ValueError, match=r"even batch size.*batch=7"):
        _fit(mixco, views, batch_size=7)
    for base in ("simclr", "supcon", "byol"):
        # Several query crops would be ignored but the first one: named instead.
        trainer = compile_trainer(fx.make_trainer(base, "none"))
        crops = {"query": (views["query"], views["query"]), "key": views["key"],
                 "labels": views["labels"]}
        with pytest.raises(ValueError, match=r"takes one query view.*a tuple of 2 query crops"):
            _fit(trainer, crops)
    queued = compile_trainer(fx.make_trainer("supcon_queue", "none"))
    with pytest.raises(ValueError, match="needs labels in every batch"):
        _fit(queued, {"query": views["query"], "key": views["key"]})
    moco = compile_trainer(fx.make_trainer("moco", "none"))
    with pytest.raises(ValueError, match=r"at most the queue size. Received: size=16, global "
                                         r"batch=20"):
        _fit(moco, fx.views(20), batch_size=20)
    split = compile_trainer(fx.make_trainer("moco", "none", bn_splits=3))
    with pytest.raises(ValueError, match=r"multiple of `bn_splits`.*batch=8, bn_splits=3"):
        _fit(split, views)
    with pytest.raises(ValueError, match=r"evaluate\(\) on plain images.*num_classes=None"):
        compile_trainer(fx.make_trainer("simclr", "none", num_classes=None)).evaluate(
            views["query"], views["labels"], verbose=0
        )
    with pytest.raises(ValueError, match=r"Received: loss='mse'"):
        fx.make_trainer("simclr", "none").compile(optimizer="sgd", loss="mse")


BAD_ARGUMENTS = {
    "simclr-temperature-0": (lambda e: kc.models.SimCLRModel(e, temperature=0), r"temperature=0\b"),
    "simclr-temperature-nan": (
        lambda e: kc.models.SimCLRModel(e, temperature=float("nan")), "temperature=nan"
    ),
    "moco-temperature-0": (lambda e: kc.models.MoCoModel(e, temperature=0.0), r"temperature=0\.0"),
    "moco-momentum": (lambda e: kc.models.MoCoModel(e, momentum=1.5), r"momentum=1\.5"),
    "byol-momentum": (lambda e: kc.models.BYOLModel(e, momentum=1.5), r"momentum=1\.5"),
    "supcon-momentum": (
        lambda e: kc.models.SupConModel(e, queue_size=8, momentum=1.5), r"momentum=1\.5"
    ),
    "moco-queue_size": (lambda e: kc.models.MoCoModel(e, queue_size=0), r"queue_size=0"),
    "supcon-queue_size": (lambda e: kc.models.SupConModel(e, queue_size=0), r"queue_size=0"),
    "moco-bn_splits": (lambda e: kc.models.MoCoModel(e, bn_splits=0), r"bn_splits=0"),
    "simclr-num_classes": (lambda e: kc.models.SimCLRModel(e, num_classes=1), r"num_classes=1"),
    "supcon-num_classes": (lambda e: kc.models.SupConModel(e, num_classes=1), r"num_classes=1"),
    "byol-total_steps": (lambda e: kc.models.BYOLModel(e, total_steps=0), r"total_steps=0"),
    "seed": (lambda e: kc.models.SimCLRModel(e, seed=1.5), r"seed=1\.5"),
    "head": (lambda e: kc.models.SimCLRModel(e, head="mlp"), r"head='mlp'"),
    "duplicate-add-ons": (
        lambda e: kc.models.MoCoModel(e, add_ons=[objectives.CLSA(), objectives.CLSA()]),
        r"`add_ons` has two objectives logging 'ddm_loss'",
    ),
    "add-on-type": (
        lambda e: kc.models.SimCLRModel(e, add_ons=["clsa"]), r"`add_ons` must be objectives"
    ),
    "clsa-temperature": (lambda e: objectives.CLSA(temperature=0), r"temperature=0\b"),
    "mixco-temperature": (
        lambda e: objectives.MixCo(temperature=float("nan")), r"temperature=nan"
    ),
    "mixco-weight": (lambda e: objectives.MixCo(weight=-1), r"weight=-1"),
}


@pytest.mark.parametrize("make, match", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_bad_constructor_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make(fx.encoder())


def test_unbuilt_encoder():
    with pytest.raises(ValueError, match="`encoder` must be a built keras.Model"):
        kc.models.SimCLRModel(keras.Sequential([keras.layers.Dense(4)]))
