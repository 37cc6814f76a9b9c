"""End-to-end runs of every recipe on the shipped CIFAR-10 sample, in subprocesses.

Each run trains a tiny ResNet (width 4) for a couple of steps, evaluates, exports, and prints
its JSON line; the tests then load the SavedModel. Marked slow (tens of seconds each).
"""

import dataclasses
import importlib
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECIPES = os.path.join(REPO, "recipes")
HERE = os.path.dirname(os.path.abspath(__file__))

QUICK = [
    "--dataset=cifar10_sample",
    "--width=4",
    "--batch_size=16",
    "--epochs=1",
    "--steps_per_epoch=2",
    "--eval_epochs=1",
    "--seed=1",
]


def recipe_env(extra=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.pop("TF_CONFIG", None)
    env.update(extra or {})
    return env


def run_recipe(name, tmp_path, *args, env=None, timeout=420):
    command = [
        sys.executable,
        os.path.join(RECIPES, name),
        f"--model_dir={tmp_path / 'model'}",
        f"--export_dir={tmp_path / 'export'}",
        *QUICK,
        *args,
    ]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, env=recipe_env(env)
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return last_json(proc.stdout)


def last_json(stdout):
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, stdout[-3000:]
    return json.loads(lines[-1])


def check_saved_model(export_dir, num_classes=10, size=32):
    """Loads the export in a fresh interpreter that does not import keras_contrast."""
    code = f"""
import json, numpy as np, tensorflow as tf
loaded = tf.saved_model.load({export_dir!r})
images = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, {size}, {size}, 3)), tf.float32)
out = loaded.signatures["serving_default"](images=images)
jpeg = tf.io.encode_jpeg(tf.cast(images[0], tf.uint8)).numpy()
enc = loaded.signatures["serve_encoded"](image_bytes=tf.constant([jpeg]))
print(json.dumps({{k: list(v.shape) for k, v in out.items()}}))
print(json.dumps({{k: list(v.shape) for k, v in enc.items()}}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
        env=recipe_env({"PYTHONPATH": ""}), cwd="/",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shapes, encoded = [json.loads(x) for x in proc.stdout.strip().splitlines()[-2:]]
    assert shapes["probabilities"] == [2, num_classes]
    assert encoded["probabilities"] == [1, num_classes]
    assert "embeddings" in shapes


def check_result(result, tmp_path, size=32, steps=2):
    assert result["export_dir"] == str(tmp_path / "export")
    if steps is None:
        # mixed_float16: dynamic loss scaling skips the first steps, whose scaled gradients
        # overflow (the scale starts at 2^15 and halves on each), as Keras does.
        assert 0 <= result["optimizer_steps"] <= 2
    else:
        assert result["optimizer_steps"] == steps
    check_saved_model(result["export_dir"], size=size)


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, args",
    [("supcon", ["--optimizer=lars"]),
     ("simclr", ["--optimizer=lamb", "--eval_protocol=augmented"])],
)
def test_supcon_cifar(tmp_path, method, args):
    result = run_recipe("supcon_cifar.py", tmp_path, f"--method={method}", *args)
    assert result["method"] == result["base"] == method
    assert 0.0 <= result["linear_eval_accuracy"] <= 1.0
    assert os.path.exists(result["encoder_path"])
    check_result(result, tmp_path)
    logs = tmp_path / "model" / "tensorboard"
    assert any("images" in root for root, _, files in os.walk(logs) if files)


@pytest.mark.slow
def test_supcon_cifar_mirrored(tmp_path):
    result = run_recipe(
        "supcon_cifar.py", tmp_path, "--strategy=mirrored",
    )
    check_result(result, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--noimclr", "--cutmix", "--randaugment", "--nesterov", "--nocache",
         "--novalidation_curve"],
        # Both crashed in 0.1.0: a 6-channel TensorBoard image, and 32-px evaluation images.
        ["--axis=channels", "--jit_compile"],
        ["--axis=height", "--image_size=16", "--optimizer=adamw",
         "--mixed_precision=mixed_bfloat16", "--autoaugment"],
    ],
)
def test_imclr_cifar(tmp_path, args):
    result = run_recipe("imclr_cifar.py", tmp_path, "--train_fraction=0.5", *args)
    assert result["imclr"] == ("--noimclr" not in args)
    check_result(result, tmp_path, size=16 if "--image_size=16" in args else 32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        # MoCo + MixCo crashed under mixed_float16 in 0.1.0 (dtype mismatch in MatMul).
        ["--mixed_precision=mixed_float16"],
        ["--base=simclr"],
        ["--image_size=16"],
    ],
)
def test_mixco_cifar(tmp_path, args):
    result = run_recipe("mixco_cifar.py", tmp_path, "--queue_size=64", *args)
    assert result["mixco"] is True and result["clsa"] is False
    assert result["base"] == ("simclr" if "--base=simclr" in args else "moco")
    float16 = "--mixed_precision=mixed_float16" in args
    assert np.isfinite(result["loss"])
    check_result(result, tmp_path, size=16 if "--image_size=16" in args else 32,
                 steps=None if float16 else 2)


@pytest.mark.slow
@pytest.mark.parametrize("crops_flag", ["--crops=single", "--crops=multi"])
def test_clsa_cifar(tmp_path, crops_flag):
    result = run_recipe("clsa_cifar.py", tmp_path, "--queue_size=64", crops_flag)
    crops = crops_flag.split("=")[1]
    assert result["clsa"] is True and result["crops"] == crops and result["base"] == "moco"
    check_result(result, tmp_path)


BASES = ["simclr", "supcon", "moco", "byol"]
ADD_ONS = {"none": [], "clsa": ["--clsa"], "mixco": ["--mixco"], "both": ["--clsa", "--mixco"]}
# A few combinations also exercise trainer arguments and variants (queued SupCon, CLSA
# multi-crop on SimCLR, MoCo's options, BYOL without the probe).
EXTRA_ARGS = {
    ("simclr", "clsa"): ["--crops=multi", "--clsa_weight=0.5", "--clsa_temperature=0.1"],
    ("simclr", "both"): ["--temperature=0.3", "--mixco_weight=0.5", "--mixco_temperature=0.1"],
    ("supcon", "both"): ["--queue_size=32", "--moco_momentum=0.9"],
    ("moco", "both"): ["--symmetric", "--batch_negatives", "--bn_splits=2", "--noshuffle_bn",
                       "--knn_monitor"],
    ("moco", "clsa"): ["--crops=multi"],
    ("byol", "none"): ["--noprobe"],
    ("byol", "both"): ["--moco_momentum=0.99"],
}


def combination_args(base, add_ons):
    queue = ["--queue_size=32"] if base == "moco" else []
    return [f"--base={base}", *ADD_ONS[add_ons], *queue, *EXTRA_ARGS.get((base, add_ons), [])]


@pytest.mark.slow
def test_pretrain_builds_and_trains_every_combination(recipe_flags):
    """Every base x add-on set, from flags to a trained step, in this process.

    The flags go through the recipes' own parsing (`recipe_config`) and builders
    (`build_trainer`, `build_optimizer`, `build_views`), and each trainer takes one optimizer
    step on views of the shipped sample. (`test_pretrain_end_to_end` runs a few of these as
    whole recipes in subprocesses: one per base.)
    """
    import builders
    import keras
    import tensorflow as tf

    import keras_contrast as kc

    images, labels, _ = kc.data.cifar10_sample_arrays("train")
    images, labels = images[::500][:8], labels[::500][:8]
    trainer_class = {"simclr": kc.models.SimCLRModel, "supcon": kc.models.SupConModel,
                     "moco": kc.models.MoCoModel, "byol": kc.models.BYOLModel}
    for base in BASES:
        for add_ons in ADD_ONS:
            extra = EXTRA_ARGS.get((base, add_ons), [])
            recipe_flags[1].unparse_flags()  # each combination from the flags' defaults
            config, p = parse_configs(recipe_flags, *combination_args(base, add_ons),
                                      "--batch_size=8")
            keras.utils.clear_session()
            model = builders.build_trainer(config, p, size=32, steps=1, num_classes=10, seed=0)
            model.compile(optimizer=builders.build_optimizer(config, 1))
            views = builders.build_views(p, 32, seed=0)(tf.constant(images))
            batch = (views, tf.constant(labels)) if base == "supcon" or p.probe else views
            history = model.fit(
                tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0, shuffle=False
            ).history
            where = f"{base} + {add_ons} {extra}"
            assert type(model) is trainer_class[base], where
            assert [type(a).__name__ for a in model.add_ons] == [
                name for name, flag in (("CLSA", "--clsa"), ("MixCo", "--mixco"))
                if flag in ADD_ONS[add_ons]
            ], where
            assert int(model.optimizer.iterations.numpy()) == 1, where
            assert np.isfinite(history["loss"][-1]), where
            assert ("probe_accuracy" in history) is ("--noprobe" not in extra), where
            if "--crops=multi" in extra:
                assert len(views["strong"]) == 5, where
                assert isinstance(views["query"], tuple) is (base == "moco"), where
            if base == "moco" and add_ons == "both":
                assert (model.symmetric, model.batch_negatives, model.bn_splits,
                        model.shuffle_bn) == (True, True, 2, False), where


# One whole recipe per base (with its most demanding option set); every other combination is
# built and trained in-process above.
END_TO_END = [("simclr", "clsa"), ("supcon", "both"), ("moco", "both"), ("byol", "none")]


@pytest.mark.slow
@pytest.mark.parametrize("base, add_ons", END_TO_END)
def test_pretrain_end_to_end(tmp_path, base, add_ons):
    """`pretrain.py` trains, evaluates and exports: one optimizer step each."""
    extra = EXTRA_ARGS.get((base, add_ons), [])
    result = run_recipe(
        "pretrain.py", tmp_path, *combination_args(base, add_ons), "--steps_per_epoch=1",
    )
    assert result["base"] == base
    assert result["clsa"] is ("--clsa" in ADD_ONS[add_ons])
    assert result["mixco"] is ("--mixco" in ADD_ONS[add_ons])
    if result["clsa"]:
        assert result["crops"] == ("multi" if "--crops=multi" in extra else "single")
    assert result["optimizer_steps"] == 1
    assert np.isfinite(result["loss"])
    assert ("probe_accuracy" in result) is ("--noprobe" not in extra)
    assert 0.0 <= result["linear_eval_accuracy"] <= 1.0
    if "--knn_monitor" in extra:
        with open(tmp_path / "model" / "knn_curve.json") as f:
            assert json.load(f) == {"1": result["knn_accuracy"]}
    else:
        assert "knn_accuracy" not in result
    assert result["export_dir"] == str(tmp_path / "export")
    assert os.path.exists(os.path.join(result["export_dir"], "saved_model.pb"))
    assert os.path.exists(result["encoder_path"])


def test_knn_curve_is_written_per_epoch_and_logged(recipe_flags, tmp_path):
    """MoCo's kNN monitor: class-constant images are classified exactly (or exactly wrong)."""
    import builders
    import keras
    import tensorflow as tf

    images = np.concatenate([np.zeros((6, 4, 4, 3)), np.full((6, 4, 4, 3), 255.0)]).astype(
        "float32")
    labels = np.repeat([0, 1], 6).astype("int32")
    batches = lambda y: tf.data.Dataset.from_tensor_slices((images, y)).batch(4)  # noqa: E731
    encoder = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                                keras.layers.Lambda(
        lambda x: keras.ops.concatenate([x / 255.0, keras.ops.ones_like(x[:, :1])], -1))])

    class Trainer:  # the callback reads `model.encoder`
        pass

    trainer = Trainer()
    trainer.encoder = encoder
    for validation_labels, expected in ((labels, 1.0), (1 - labels, 0.0)):
        path = tmp_path / f"knn_{expected}.json"
        callback = builders.KNNCurve(batches(labels), batches(validation_labels), 2, str(path))
        callback.set_model(trainer)
        logs = [{}, {}]
        for epoch in (0, 1):
            callback.on_epoch_end(epoch, logs[epoch])
        assert logs == [{"knn_accuracy": expected}] * 2
        with open(path) as f:
            assert json.load(f) == {"1": expected, "2": expected}


@pytest.mark.slow
@pytest.mark.parametrize("args", [["--imclr"], ["--noimclr", "--unlabelled_batch_size=32"]])
def test_semisup_cifar(tmp_path, args):
    result = run_recipe("semisup_cifar.py", tmp_path, "--labelled_per_class=20", *args)
    assert result["imclr"] is ("--imclr" in args)
    assert (result["labelled"], result["unlabelled"]) == (200, 4800)
    check_result(result, tmp_path)
    # A finished run is not trained again: it only re-exports.
    again = run_recipe("semisup_cifar.py", tmp_path, "--labelled_per_class=20", *args)
    assert again["optimizer_steps"] == 2
    assert again["validation_accuracy"] == result["validation_accuracy"]


@pytest.mark.parametrize("model_flag", ["--model=resnet34", "--model=resnet50",
                                        "--model=MobileNetV2"])
def test_every_model_choice_builds_and_trains(recipe_flags, model_flag):
    """The other CIFAR ResNets and a keras.applications name, through the recipes' builder
    (a whole recipe per model would cost minutes each)."""
    import builders
    import keras
    import tensorflow as tf

    import keras_contrast as kc

    config, _ = parse_configs(recipe_flags, model_flag, "--width=4")
    keras.utils.clear_session()
    encoder = builders.build_encoder(config, 32)
    classifier = kc.models.LinearClassifier(encoder, 10, freeze_encoder=False)
    classifier.compile(optimizer=builders.build_optimizer(config, 1),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    images, labels, _ = kc.data.cifar10_sample_arrays("train")
    before = [w.numpy().copy() for w in classifier.trainable_weights]
    history = classifier.fit(tf.data.Dataset.from_tensors((images[:8], labels[:8])),
                             epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b.numpy())
               for a, b in zip(before, classifier.trainable_weights))
    name = model_flag.split("=")[1]
    if name.startswith("resnet"):
        assert isinstance(encoder, kc.models.ResNet) and encoder.depth == int(name[6:])
    else:
        assert isinstance(encoder, kc.models.ApplicationBackbone)


def test_semisup_labelled_split_is_the_first_images_of_each_class(recipe_flags):
    import semisup_cifar

    labels = np.array([2, 0, 0, 1, 2, 0, 1, 2, 1, 0], np.int32)
    labelled, rest = semisup_cifar.split_labelled(labels, 2, 3)
    assert labelled.tolist() == [0, 1, 2, 3, 4, 6]
    assert rest.tolist() == [5, 7, 8, 9]
    with pytest.raises(ValueError, match=r"leave unlabelled images in every class \(the "
                                         r"smallest class has 3 .* --labelled_per_class=3"):
        semisup_cifar.split_labelled(labels, 3, 3)
    with pytest.raises(ValueError, match="--labelled_per_class=0"):
        semisup_cifar.split_labelled(labels, 0, 3)


@pytest.mark.slow
def test_linear_eval_of_saved_encoder(tmp_path):
    pretrain = run_recipe("supcon_cifar.py", tmp_path / "pre")
    result = run_recipe("linear_eval.py", tmp_path, f"--encoder={pretrain['encoder_path']}")
    assert 0.0 <= result["linear_eval_accuracy"] <= 1.0
    check_saved_model(result["export_dir"])


def write_image_folder(root, per_class=12, classes=3):
    """A tiny ImageFolder (PNG files) of the shipped sample's first classes."""
    import keras_contrast as kc
    import tensorflow as tf

    images, labels, _ = kc.data.cifar10_sample_arrays("train")
    for label in range(classes):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for i, image in enumerate(images[labels == label][:per_class]):
            (folder / f"{i:03d}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["imclr_cifar.py", "supcon_cifar.py"])
def test_no_validation_split_trains_exports_and_reports_null(tmp_path, recipe):
    """`--validation_per_class=0`: every image trains (0.1.0 crashed after pretraining)."""
    folder = write_image_folder(tmp_path / "images")
    result = run_recipe(
        recipe, tmp_path, f"--dataset=folder:{folder}", "--validation_per_class=0",
        "--batch_size=8",
    )
    key = "validation_accuracy" if recipe == "imclr_cifar.py" else "linear_eval_accuracy"
    assert result[key] is None
    check_saved_model(result["export_dir"], num_classes=3)
    assert not os.path.exists(tmp_path / "model" / "backup")  # removed at the very end


@pytest.fixture
def recipe_flags():
    """The recipes' flags and config module, parsed in this process; reset afterwards."""
    sys.path.insert(0, RECIPES)
    try:
        import recipe_config  # imports recipe_flags, which defines the flags
        from absl import flags

        yield recipe_config, flags.FLAGS
    finally:
        flags.FLAGS.unparse_flags()
        sys.path.remove(RECIPES)


def parse_configs(recipe_flags, *args):
    recipe_config, flag_values = recipe_flags
    flag_values(["recipe", *QUICK, *args])
    config = recipe_config.config_from_flags("pretrain")
    return config, recipe_config.pretrain_config_from_flags(config)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch_size=0"], "--batch_size must be >= 1. Received: --batch_size=0"),
        (["--validation_per_class=-1"],
         "--validation_per_class must be >= 0 (0: no validation split). "
         "Received: --validation_per_class=-1"),
        (["--dataset=folder:/x", "--validation_per_class=0", "--validation_curve"],
         "--validation_curve needs a validation split"),
        (["--dataset=folder:/x", "--validation_per_class=0", "--knn_monitor"],
         "--knn_monitor needs a validation split. Received: --knn_monitor with "
         "--validation_per_class=0"),
        (["--on_bad_image=skip"],
         "--on_bad_image is only used with --dataset=folder:... Received: "
         "--on_bad_image=skip with --dataset=cifar10_sample"),
        (["--model=resnet99"], "--model must be one of"),
        (["--tpu=grpc://x"], "--tpu is only used with --strategy=tpu"),
        (["--warmup_epochs=5"], "--warmup_epochs must be in"),
        (["--cosine_floor=1"], "--cosine_floor must be in [0, 1). Received: --cosine_floor=1.0"),
        (["--cosine_floor=-0.1"], "--cosine_floor must be in [0, 1)"),
        (["--strategy=multi_worker"], "needs the TF_CONFIG environment variable"),
        (["--temperature=0"], "--temperature must be > 0. Received: --temperature=0.0"),
        (["--steps_per_epoch=0"], "--steps_per_epoch must be >= 1"),
        (["--projection_dim=0"], "--projection_dim must be >= 1. Received: --projection_dim=0"),
        (["--base=byol", "--projection_dim=64"],
         "--projection_dim is only used by the contrastive bases. "
         "Received: --projection_dim=64 with --base=byol"),
        (["--base=byol", "--temperature=0.2"],
         "--temperature is only used by the contrastive bases. Received: --temperature=0.2 "
         "with --base=byol"),
        (["--base=simclr", "--queue_size=64"],
         "--queue_size is only used with --base=moco or --base=supcon. "
         "Received: --queue_size=64 with --base=simclr"),
        (["--base=byol", "--queue_size=64"], "--queue_size is only used with"),
        (["--base=moco", "--queue_size=24"],
         "--queue_size must be a multiple of the global --batch_size. "
         "Received: --queue_size=24 with --batch_size=16"),
        (["--base=supcon", "--queue_size=40"], "--queue_size must be a multiple"),
        (["--base=moco", "--queue_size=0"], "--queue_size must be >= 1"),
        (["--base=supcon", "--moco_momentum=0.9"],
         "--moco_momentum is only used with --base=moco, --base=byol, or --base=supcon with "
         "--queue_size. Received: --moco_momentum=0.9 with --base=supcon"),
        (["--base=simclr", "--moco_momentum=0.9"], "--moco_momentum is only used with"),
        (["--base=moco", "--moco_momentum=1.5"],
         "--moco_momentum must be in [0, 1]. Received: --moco_momentum=1.5"),
        (["--base=simclr", "--bn_splits=2"],
         "--bn_splits is only used with --base=moco. Received: --bn_splits=2 with "
         "--base=simclr"),
        (["--base=supcon", "--queue_size=32", "--noshuffle_bn"],
         "--shuffle_bn is only used with --base=moco"),
        (["--base=byol", "--batch_negatives"], "--batch_negatives is only used with --base=moco"),
        (["--base=simclr", "--symmetric"], "--symmetric is only used with --base=moco"),
        (["--base=moco", "--queue_size=32", "--bn_splits=3"],
         "--batch_size must be divisible by --bn_splits. Received: --batch_size=16 with "
         "--bn_splits=3"),
        (["--base=moco", "--queue_size=32", "--bn_splits=0"], "--bn_splits must be >= 1"),
        (["--crops=multi"],
         "--crops is only used with --clsa. Received: --crops=multi with --noclsa"),
        (["--clsa_weight=2"], "--clsa_weight is only used with --clsa"),
        (["--clsa_temperature=0.1"], "--clsa_temperature is only used with --clsa"),
        (["--mixco_weight=2"], "--mixco_weight is only used with --mixco. "
         "Received: --mixco_weight=2.0 with --nomixco"),
        (["--mixco_temperature=0.1"], "--mixco_temperature is only used with --mixco"),
        (["--clsa", "--clsa_temperature=0"], "--clsa_temperature must be > 0"),
        (["--mixco", "--mixco_temperature=-1"], "--mixco_temperature must be > 0"),
        (["--clsa", "--clsa_weight=-1"],
         "--clsa_weight must be >= 0. Received: --clsa_weight=-1.0"),
        (["--mixco", "--mixco_weight=-0.5"], "--mixco_weight must be >= 0"),
    ],
)
def test_bad_flags_give_clear_errors(recipe_flags, monkeypatch, args, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_configs(recipe_flags, *args)


def test_moco_default_queue_is_checked_against_the_batch(recipe_flags):
    """Without --queue_size, MoCo's default queue must still be a multiple of the batch."""
    import keras_contrast as kc

    default = inspect.signature(kc.models.MoCoModel.__init__).parameters["queue_size"].default
    with pytest.raises(ValueError, match=re.escape(f"Received: --queue_size={default} with")):
        parse_configs(recipe_flags, "--base=moco", f"--batch_size={default + 1}")


@pytest.mark.parametrize("base", ["moco", "simclr"])
def test_clsa_crops_of_the_views(recipe_flags, base):
    """Single: one 14-px strong crop (96 of 224); multi: 5 strong (and 5 weak on moco)."""
    import builders
    import tensorflow as tf

    images = tf.zeros([2, 32, 32, 3], tf.uint8)
    queue = ["--queue_size=32"] if base == "moco" else []
    _, single = parse_configs(recipe_flags, f"--base={base}", *queue, "--clsa")
    views = builders.build_views(single, 32, seed=0)(images)
    assert views["query"].shape == (2, 32, 32, 3) and views["strong"].shape == (2, 14, 14, 3)
    recipe_flags[1].unparse_flags()
    _, multi = parse_configs(recipe_flags, f"--base={base}", *queue, "--clsa", "--crops=multi")
    maker = builders.build_views(multi, 32, seed=0)
    assert [c for c, _ in maker.strong_crops] == [32, 27, 23, 18, 14]
    # MoCo contrasts each of CLSA's five weak crops (the query first); the others take one.
    expected = [27, 23, 18, 14] if base == "moco" else []
    assert [c for c, _ in maker.weak_crops] == expected


def test_good_flags_give_the_pretrain_config(recipe_flags):
    config, pretrain_config = parse_configs(
        recipe_flags, "--base=supcon", "--queue_size=32", "--moco_momentum=0.9", "--clsa",
        "--mixco", "--mixco_weight=0.5", "--projection_dim=64", "--noblur",
    )
    assert config.batch_size == 16 and config.recipe == "pretrain"
    assert pretrain_config.base == "supcon"
    assert (pretrain_config.queue_size, pretrain_config.moco_momentum) == (32, 0.9)
    assert pretrain_config.clsa and pretrain_config.crops == "single"
    assert pretrain_config.mixco and pretrain_config.mixco_weight == 0.5
    assert pretrain_config.mixco_temperature is None  # MixCo's own default
    assert pretrain_config.temperature is None  # the base's own default
    assert pretrain_config.projection_dim == 64 and pretrain_config.blur is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        pretrain_config.base = "moco"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.batch_size = 32


def test_every_config_field_has_one_flag(recipe_flags):
    """Each config field is a flag defined in recipe_flags (absl refuses a second one)."""
    recipe_config, flag_values = recipe_flags
    defined = set(flag_values.get_flags_for_module(sys.modules["recipe_flags"]))
    defined = {flag.name for flag in defined}
    for config_class in (recipe_config.RecipeConfig, recipe_config.PretrainConfig):
        fields = {field.name for field in dataclasses.fields(config_class)} - {"recipe"}
        assert fields <= defined, fields - defined


def preset_args(defaults):
    """A preset's DEFAULTS as command-line flags (absl takes --flag=true for booleans)."""
    return [
        f"--{name}={str(value).lower() if isinstance(value, bool) else value}"
        for name, value in defaults.items()
    ]


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("supcon_cifar", dict(base="supcon", temperature=0.1, blur=False, clsa=False,
                              learning_rate=0.125, cosine_floor=1e-3)),
        ("clsa_cifar", dict(base="moco", clsa=True, crops="single", temperature=0.2,
                            batch_negatives=True, queue_size=4096, moco_momentum=0.99,
                            learning_rate=0.03, cosine_floor=0.0)),
        ("mixco_cifar", dict(base="moco", mixco=True, clsa=False, temperature=None,
                             queue_size=4096, moco_momentum=0.99)),
    ],
)
def test_preset_defaults_are_valid_pretrain_flags(recipe_flags, preset, expected):
    module = importlib.import_module(preset)
    config, pretrain_config = parse_configs(
        recipe_flags, "--batch_size=64", *preset_args(module.DEFAULTS)
    )
    for name, value in expected.items():
        source = config if hasattr(config, name) else pretrain_config
        assert getattr(source, name) == value, name


def run_preset_main(recipe_flags, monkeypatch, preset, *args):
    """Runs a preset's `main` with `pretrain.run` replaced; returns the config it got."""
    module = importlib.import_module(preset)
    captured = {}
    monkeypatch.setattr(
        module.pretrain, "run", lambda config, pretrain_config, **_: captured.update(
            config=config, pretrain_config=pretrain_config)
    )
    recipe_flags[1](["recipe", *QUICK, *preset_args(module.DEFAULTS), *args])
    module.main(["recipe"])
    return captured["config"], captured["pretrain_config"]


@pytest.mark.parametrize(
    "args, warmup",
    [
        (["--batch_size=256"], 0.0),  # SupContrast warms up only above 256
        (["--batch_size=512", "--epochs=30"], 10.0),
        (["--batch_size=512", "--epochs=4"], 4.0),  # at most --epochs
        (["--batch_size=512", "--epochs=30", "--warmup_epochs=2"], 2.0),  # explicit wins
    ],
)
def test_supcon_preset_warms_up_above_batch_256(recipe_flags, monkeypatch, args, warmup):
    config, _ = run_preset_main(recipe_flags, monkeypatch, "supcon_cifar", *args)
    assert config.warmup_epochs == warmup


@pytest.mark.parametrize(
    "args, learning_rate",
    [
        ([], 0.03),  # MoCo-v2 + MixCo: MoCo's and MixCo's 0.03 per 256
        (["--base=simclr"], 0.5),  # SimCLR keeps the shared default
        (["--learning_rate=0.2"], 0.2),  # explicit wins
    ],
)
def test_mixco_preset_learning_rate_follows_the_base(
    recipe_flags, monkeypatch, args, learning_rate
):
    config, _ = run_preset_main(
        recipe_flags, monkeypatch, "mixco_cifar", "--queue_size=4096", *args
    )
    assert config.learning_rate == learning_rate


@pytest.mark.parametrize("floor", [0.0, 1e-3, 0.5])
def test_cosine_floor_is_where_the_schedule_ends(recipe_flags, floor):
    import builders

    config, _ = parse_configs(
        recipe_flags, "--learning_rate=0.4", "--batch_size=128", "--epochs=3",
        "--warmup_epochs=1", f"--cosine_floor={floor}",
    )
    optimizer = builders.build_optimizer(config, steps=10)
    peak = 0.4 * 128 / 256

    def rate_at(step):
        optimizer.iterations.assign(step)
        return float(optimizer.learning_rate)

    np.testing.assert_allclose(rate_at(10), peak, rtol=1e-6)  # the end of the warm-up
    np.testing.assert_allclose(rate_at(20), peak * (1 + floor) / 2, rtol=1e-5)  # half-way
    np.testing.assert_allclose(rate_at(30), peak * floor, rtol=1e-5, atol=1e-9)  # the end


@pytest.mark.parametrize(
    "preset, args, message",
    [
        ("supcon_cifar", ["--method=moco"], "supcon_cifar.py trains --method=supcon or "
         "--method=simclr (use pretrain.py for the other bases). Received: --method=moco"),
        ("clsa_cifar", ["--base=simclr", "--clsa"], "clsa_cifar.py trains MoCo-v2 + CLSA"),
        ("mixco_cifar", ["--base=byol", "--mixco"], "mixco_cifar.py trains --base=moco or "
         "--base=simclr (use pretrain.py --mixco for the other bases). Received: --base=byol"),
    ],
)
def test_presets_refuse_other_bases(recipe_flags, preset, args, message):
    module = importlib.import_module(preset)
    recipe_flags[1](["recipe", *QUICK, *args])
    with pytest.raises(ValueError, match=re.escape(message)):
        module.main(["recipe"])


@pytest.mark.parametrize(
    "script",
    ["pretrain.py", "supcon_cifar.py", "clsa_cifar.py", "mixco_cifar.py", "imclr_cifar.py",
     "linear_eval.py", "show_augmentations.py"],
)
def test_allocator_is_configured_before_tensorflow_starts(script):
    """Whatever a recipe imports first, TF_CPU_ALLOCATOR_USE_BFC is set when TF loads.

    The check stops the script at its first TensorFlow import, so TensorFlow never starts.
    """
    code = """
import importlib.abc, os, runpy, sys

class TensorFlowImported(Exception):
    pass

class StopAtTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tensorflow":
            raise TensorFlowImported(os.environ.get("TF_CPU_ALLOCATOR_USE_BFC"))

sys.path.insert(0, os.path.dirname(sys.argv[1]))
sys.meta_path.insert(0, StopAtTensorFlow())
try:
    runpy.run_path(sys.argv[1], run_name="__main__")
except TensorFlowImported as imported:
    print("allocator at TensorFlow import:", imported.args[0])
"""
    env = recipe_env()
    env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    proc = subprocess.run(
        [sys.executable, "-c", code, os.path.join(RECIPES, script)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert "allocator at TensorFlow import: true" in proc.stdout, proc.stdout + proc.stderr[-3000:]


def test_bad_flag_error_reaches_the_user(tmp_path):
    command = [sys.executable, os.path.join(RECIPES, "supcon_cifar.py"), *QUICK, "--epochs=0"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=recipe_env())
    assert proc.returncode != 0
    assert "--epochs must be >= 1. Received: --epochs=0" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    """Killed after epoch 1 (SIGKILL), a restart resumes at epoch 2 with the same steps."""
    args = ["--epochs=3", "--steps_per_epoch=3"]
    reference = run_recipe("supcon_cifar.py", tmp_path / "full", *args)
    assert reference["optimizer_steps"] == 9

    run_dir = tmp_path / "killed"
    command = [
        sys.executable,
        os.path.join(RECIPES, "supcon_cifar.py"),
        f"--model_dir={run_dir / 'model'}",
        f"--export_dir={run_dir / 'export'}",
        *QUICK,
        *args,
    ]
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=recipe_env()
    )
    # Kill as soon as epoch 2 starts: epoch 1 has ended and its backup has been written.
    seen = []

    def read_output():
        for line in proc.stdout:
            seen.append(line)

    reader = threading.Thread(target=read_output, daemon=True)
    reader.start()
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any("Epoch 2/3" in line for line in seen):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)

    resumed = subprocess.run(
        command, capture_output=True, text=True, timeout=420, env=recipe_env()
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "Epoch 1/3" not in resumed.stdout  # it starts at epoch 2 (or later)
    assert last_json(resumed.stdout)["optimizer_steps"] == reference["optimizer_steps"]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_multi_worker_mirrored(tmp_path):
    """Two worker processes on 127.0.0.1 train together and end with the same weights."""
    ports = free_ports(2)
    workers = [f"127.0.0.1:{port}" for port in ports]
    procs = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        worker_dir = tmp_path / f"worker{index}"
        command = [
            sys.executable,
            os.path.join(RECIPES, "supcon_cifar.py"),
            "--strategy=multi_worker",
            "--sync_bn",  # global BatchNorm statistics: moving averages agree too
            f"--model_dir={worker_dir / 'model'}",
            f"--export_dir={worker_dir / 'export'}",
            *QUICK,
        ]
        procs.append(
            subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                env=recipe_env({"TF_CONFIG": json.dumps(tf_config)}),
            )
        )
    outputs = [p.communicate(timeout=420) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err[-4000:]
    results = [last_json(out) for out, _ in outputs]
    assert all(r["optimizer_steps"] == 2 for r in results)

    code = """
import sys, numpy as np, keras, keras_contrast
a, b = (keras.saving.load_model(p) for p in sys.argv[1:3])
diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a.get_weights(), b.get_weights()))
print(diff)
"""
    proc = subprocess.run(
        [sys.executable, "-c", code, results[0]["encoder_path"], results[1]["encoder_path"]],
        capture_output=True, text=True, timeout=180, env=recipe_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-5


@pytest.mark.slow
def test_output_is_quiet_by_default_and_verbosity_restores_logs(tmp_path):
    """0.1.0 printed ~26 lines of TensorFlow/absl logging around the recipe's own 4 lines."""

    def run(name, *args):
        command = [sys.executable, os.path.join(RECIPES, "supcon_cifar.py"),
                   f"--model_dir={tmp_path / name}", f"--export_dir={tmp_path / name / 'x'}",
                   *QUICK, *args]
        env = recipe_env()
        env.pop("TF_CPP_MIN_LOG_LEVEL")  # as a user's shell has it
        proc = subprocess.run(command, capture_output=True, text=True, timeout=420, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    quiet = run("quiet")
    assert quiet.stderr == ""
    # Not a terminal: one line per epoch (pretraining, linear evaluation), then the JSON.
    lines = quiet.stdout.strip().splitlines()
    assert len(lines) <= 4 and json.loads(lines[-1])["recipe"] == "supcon_cifar"
    loud = run("loud", "--verbosity=0")
    assert "Linear evaluation accuracy" in loud.stderr  # absl logging is back
    # and so is TensorFlow's C++ logging ("file.cc:LINE]" lines; which ones depends on the
    # machine: oneDNN notices only on CPUs where oneDNN is on)
    assert re.search(r"\.cc:\d+\]", loud.stderr), loud.stderr[-2000:]


def test_every_documented_flag_value_runs_in_a_recipe_test(recipe_flags):
    """Each value of every enum flag of the recipes, and the side of every bool flag, that is
    not its default is in the arguments of a recipe test (0.1.0 offered values that crashed:
    `--axis=channels`, `--image_size=16`, `--validation_per_class=0`)."""
    import glob

    import imclr_cifar  # noqa: F401 (define their own flags)
    import semisup_cifar  # noqa: F401

    flag_values = recipe_flags[1]
    text = "".join(open(path).read() for path in glob.glob(os.path.join(HERE, "*.py")))
    missing = []
    for name, flag in flag_values._flags().items():
        module = flag_values.find_module_defining_flag(name) or ""
        recipes = ("recipe_flags", "imclr_cifar", "semisup_cifar")
        if name != flag.name or not module.endswith(recipes):
            continue
        if flag.flag_type() == "bool":
            wanted = [f"--no{name}" if flag.default else f"--{name}"]
        elif getattr(flag.parser, "enum_values", None):
            # The default runs in every test.
            wanted = [f"--{name}={v}" for v in flag.parser.enum_values if v != flag.default]
        else:
            continue
        missing += [w for w in wanted if not re.search(re.escape(w) + r"(?![\w=])", text)]
    # --model is a string: the other CIFAR ResNets and a keras.applications name (built and
    # trained by `test_every_model_choice_builds_and_trains`).
    for wanted in ("--model=resnet34", "--model=resnet50", "--model=MobileNetV2"):
        missing += [] if f'"{wanted}"' in text else [wanted]
    assert missing == [], missing
