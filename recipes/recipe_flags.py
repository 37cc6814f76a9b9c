"""Every flag the recipes share, defined once; nothing else happens here.

`recipe_config.py` turns the parsed flags into frozen, validated configs; `builders.py` and
the recipes receive those configs, never `FLAGS`. Flags that a single script alone has stay in
that script (`imclr_cifar.py --axis`, `linear_eval.py --encoder`, ...); a preset that names a
shared flag differently uses an alias (`supcon_cifar.py --method` is `--base`).

Two groups:

* shared flags (data, model, optimisation, distribution, run folders), read by every recipe
  into a `RecipeConfig`;
* pretraining flags (`--base`, the add-ons and the trainers' arguments), read by `pretrain.py`
  and its presets into a `PretrainConfig`. A trainer argument whose flag is left at `None`
  takes the trainer's own default, so the recipes do not restate the library's defaults.

Importing this module first also configures TensorFlow's CPU allocator (below), which must
happen before TensorFlow starts: every recipe module imports it before anything that imports
TensorFlow.
"""

import os
import sys

from absl import flags
from absl import logging

# TensorFlow's default CPU allocator gets fresh pages from the OS for every large tensor
# and faults them in; its BFC allocator reuses memory. On the CPU input pipeline this makes
# StrongAugment at 224x224 about 2x faster (BENCHMARKS.md). It must be set before TensorFlow
# starts; an explicit setting in the environment wins.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

# Quiet by default: a recipe prints its own lines and Keras' progress only. TensorFlow's C++
# log level must be set before TensorFlow starts (it would print oneDNN, CPU-feature and CUDA
# notices, and a `cuInit` error on every CPU machine); `--verbosity=0` (absl's flag: 0 = INFO,
# -1 = WARNING) restores them, and an explicit TF_CPP_MIN_LOG_LEVEL in the environment wins.
QUIET = not any(arg.startswith(("--verbosity", "-v")) for arg in sys.argv[1:])
if QUIET:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    flags.FLAGS.set_default("verbosity", logging.WARNING)
    # A few notices (oneDNN, "Could not find cuda drivers") are printed while TensorFlow's
    # C++ runtime loads, before its log level applies: load it with stderr silenced.
    _stderr, _devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(_devnull, 2)
    try:
        import tensorflow  # noqa: F401
        import keras  # noqa: F401
        import keras_contrast  # noqa: F401
    finally:
        os.dup2(_stderr, 2)
        os.close(_stderr)
        os.close(_devnull)

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
OPTIMIZERS = ("sgd", "lars", "adamw", "lamb")
MIXED_PRECISION = ("none", "mixed_float16", "mixed_bfloat16")
CIFAR_RESNETS = {"resnet18": 18, "resnet34": 34, "resnet50": 50}
BASES = ("simclr", "supcon", "moco", "byol")
CROPS = ("single", "multi")

# Shared flags: every recipe.

flags.DEFINE_string(
    "dataset",
    "cifar10_sample",
    "`cifar10_sample` (shipped with the package, offline), `folder:/path` (ImageFolder "
    "layout) or a TFDS name (`cifar10`, `cifar100`, `stl10`, `imagenet2012`, ...).",
)
flags.DEFINE_string("data_dir", None, "TFDS data_dir (prepared datasets).")
flags.DEFINE_integer(
    "validation_per_class",
    500,
    "For `folder:` datasets: images per class (the last ones) held out for validation; 0: "
    "no validation split (every image trains; no validation curve, null accuracies).",
)
flags.DEFINE_enum(
    "on_bad_image", "error", ["error", "skip"],
    "For `folder:` datasets: an empty, truncated or non-image file stops the recipe at "
    "start-up with its name (error), or is left out with a warning (skip).",
)
flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address for --strategy=tpu.")
flags.DEFINE_string(
    "model",
    "resnet18",
    "resnet18|resnet34|resnet50 (CIFAR-style) or a keras.applications name (e.g. ResNet50).",
)
flags.DEFINE_integer(
    "width", 16, "CIFAR ResNet first-stage width (64 = the standard ResNet; 16 is CPU-sized)."
)
flags.DEFINE_bool(
    "sync_bn", False, "BatchNorm statistics over the global batch of all replicas (CIFAR "
    "ResNets); keeps the moving statistics identical across workers."
)
flags.DEFINE_integer("image_size", None, "Training image size; default: the dataset's.")
flags.DEFINE_integer("epochs", 1, "Training epochs.")
flags.DEFINE_integer("batch_size", 64, "Global batch size (split across replicas).")
flags.DEFINE_float(
    "learning_rate", 0.5, "Learning rate per 256 examples: scaled by batch_size / 256."
)
flags.DEFINE_enum("optimizer", "sgd", OPTIMIZERS, "Optimizer.")
flags.DEFINE_float(
    "weight_decay", 1e-4, "Weight decay: coupled L2 for sgd (torch.optim.SGD's, as the papers' "
    "references) and lars, decoupled for adamw and lamb."
)
flags.DEFINE_float("momentum", 0.9, "Momentum for sgd and lars (the optimizer, not the EMA).")
flags.DEFINE_float(
    "train_fraction", 1.0, "Fraction of the training split used (every k-th example, the "
    "same examples for every seed and recipe), e.g. 0.05 for the low-data experiments."
)
flags.DEFINE_bool("nesterov", False, "Nesterov momentum for sgd (the references use none).")
flags.DEFINE_float("warmup_epochs", 0.0, "Linear warm-up epochs before the cosine decay.")
flags.DEFINE_float(
    "cosine_floor", 0.0, "The cosine decay ends at this fraction of the peak learning rate "
    "(SupContrast's reference: 1e-3), in [0, 1)."
)
flags.DEFINE_enum("mixed_precision", "none", MIXED_PRECISION, "Keras dtype policy.")
flags.DEFINE_bool("jit_compile", False, "Compile the train step with XLA.")
flags.DEFINE_string(
    "model_dir", None, "Checkpoints (resume after a kill) and TensorBoard logs; default: a "
    "fresh folder under /tmp."
)
flags.DEFINE_string("export_dir", None, "SavedModel export folder; default saved_models/<recipe>.")
flags.DEFINE_integer("seed", 0, "Random seed (Python, NumPy, TF, tf.data, augmentations).")
flags.DEFINE_integer(
    "steps_per_epoch", None, "Optimizer steps per epoch (quick runs); default: one pass."
)
flags.DEFINE_integer(
    "eval_epochs", 100, "Epochs of the linear classifier in linear evaluation."
)
flags.DEFINE_enum(
    "eval_protocol",
    "cached",
    ["cached", "augmented"],
    "Linear evaluation: `cached` embeds the un-augmented training split once and trains the "
    "linear layer on the cached features (cheap); `augmented` runs the frozen encoder on "
    "random-resized-crop + flip views every epoch, as the references do (costs a forward "
    "pass of the training split per epoch).",
)
flags.DEFINE_float(
    "eval_learning_rate", 0.1, "Linear evaluation: SGD learning rate (momentum 0.9, cosine "
    "decay, no weight decay, batch --batch_size)."
)
flags.DEFINE_bool(
    "validation_curve", True, "Measure validation accuracy after every epoch (the online "
    "probe for pretraining) into <model_dir>/curve.json."
)
flags.DEFINE_bool("cache", True, "Cache the decoded dataset in memory.")

# ImCLR flags: imclr_cifar.py (default --imclr) and semisup_cifar.py (default --noimclr).

flags.DEFINE_bool(
    "imclr", False, "imclr_cifar, semisup_cifar: pair images (ImCLR); --noimclr trains the "
    "baseline (default: imclr_cifar --imclr, semisup_cifar --noimclr)."
)
flags.DEFINE_enum("axis", "width", ["width", "height", "channels"], "ImCLR pairing axis.")

# Pretraining flags: pretrain.py and its presets (supcon_cifar, clsa_cifar, mixco_cifar).

flags.DEFINE_enum(
    "base", "simclr", BASES,
    "Base method: simclr (NT-Xent, batch negatives), supcon (labels; queued with "
    "--queue_size), moco (MoCo-v2: momentum key encoder + queue), byol (no negatives).",
)
flags.DEFINE_bool(
    "knn_monitor", False, "Weighted kNN accuracy of the encoder's features on the validation "
    "split after every epoch (k=200, T=0.1, the un-augmented training split as memory bank: "
    "MoCo's CIFAR monitor) into <model_dir>/knn_curve.json; the last one is in the JSON line "
    "as knn_accuracy. Costs one forward pass of both splits per epoch.",
)
flags.DEFINE_bool("clsa", False, "Add CLSA's DDM loss on strong views (see --crops).")
flags.DEFINE_bool("mixco", False, "Add MixCo's loss on mixed images (semi-positives).")
flags.DEFINE_enum(
    "crops", None, CROPS, "CLSA strong crops, scaled to the image size: single (the "
    "reference's 96-of-224 crop, scale (0.086, 0.429)) or multi (its five crops "
    "224/192/160/128/96; on moco also five weak query crops: 5 x 5 DDM terms); default "
    "single. Needs --clsa.",
)
flags.DEFINE_bool(
    "blur", True, "Gaussian blur in the views (SimCLR and SupCon leave it out on CIFAR)."
)
flags.DEFINE_integer(
    "projection_dim", None, "Output size of the MLP projection head of simclr, supcon and "
    "moco; default: the base's default head (128-d). byol keeps its own projector (256-d, "
    "a 4096-wide hidden layer with BatchNorm).",
)
flags.DEFINE_bool(
    "probe", True, "Train an online linear probe on detached features and log "
    "probe_accuracy; self-supervised bases then pass the labels to the probe only.",
)
flags.DEFINE_float(
    "temperature", None, "Softmax temperature of the base loss; default: the base's "
    "(simclr 0.5, supcon 0.1, moco 0.2). Not used by byol.",
)
flags.DEFINE_integer(
    "queue_size", None, "Key queue length, a multiple of --batch_size: moco (default: "
    "MoCoModel's, 4096) or supcon (makes it queued with a momentum key encoder; default: "
    "no queue).",
)
flags.DEFINE_float(
    "moco_momentum", None, "EMA momentum of the key (target) encoder of moco, byol, and "
    "supcon with --queue_size; default: the base's (moco 0.99, byol 0.996 with a cosine "
    "schedule to 1, supcon 0.999).",
)
flags.DEFINE_bool(
    "shuffle_bn", None, "moco: shuffle the keys across replicas for BatchNorm (MoCo's "
    "shuffling BN); default: MoCoModel's (on).",
)
flags.DEFINE_integer(
    "bn_splits", None, "moco: split each replica's batch into this many BatchNorm groups "
    "(shuffling BN on one device); default: MoCoModel's (on one device 8, 4 or 2 groups "
    "of >= 16 keys, as MoCo's CIFAR demo; 1 across replicas).",
)
flags.DEFINE_bool(
    "batch_negatives", None, "moco: also contrast against the other keys of the batch "
    "(CLSA's reference does); default: MoCoModel's (off).",
)
flags.DEFINE_bool(
    "symmetric", None, "moco: symmetric loss (each view is query and key once); default: "
    "MoCoModel's (off).",
)
flags.DEFINE_float("clsa_weight", None, "Weight of the CLSA (DDM) loss; default: CLSA's (1).")
flags.DEFINE_float(
    "clsa_temperature", None, "Temperature of the CLSA (DDM) loss; default: CLSA's (0.2)."
)
flags.DEFINE_float("mixco_weight", None, "Weight of the MixCo loss; default: MixCo's (1).")
flags.DEFINE_float(
    "mixco_temperature", None, "Temperature of the MixCo loss; default: MixCo's (0.05)."
)


def set_defaults(defaults, flag_values=flags.FLAGS):
    """Sets a preset's defaults (call before parsing): flags given explicitly still win."""
    for name, value in defaults.items():
        flag_values.set_default(name, value)
