r"""SupCon (or SimCLR) pretraining, then linear evaluation, then a SavedModel export.

A preset of `pretrain.py` with the settings of the SupCon paper's CIFAR recipe:

* `--method=supcon|simclr` (an alias of `--base`; default supcon): SupCon uses the labels,
  SimCLR does not (with `--probe`, the default, labels reach only the online probe);
* `--temperature=0.1` for both, as in the SupCon reference;
* `--noblur`: the SupCon references leave Gaussian blur out of the CIFAR views;
* a 128-d MLP projection head, SGD (torch semantics: coupled L2 weight decay, no Nesterov)
  with cosine decay (shared flags);
* SupContrast's schedule: `--learning_rate=0.125` per 256 examples (its 0.5 at batch 1024),
  `--cosine_floor=1e-3` (the rate ends at 1e-3 x the peak), and with a batch above 256 a
  10-epoch warm-up (`--warmup_epochs=10`, at most `--epochs`) unless `--warmup_epochs` is
  given.

Every `pretrain.py` flag works here too (e.g. `--queue_size` for the queued SupCon), and the
presets' defaults yield to explicit flags. Runs offline on the CIFAR-10 sample shipped with
the package:

    python recipes/supcon_cifar.py --strategy=mirrored
    python recipes/supcon_cifar.py --method=simclr

Real CIFAR-10 from an ImageFolder copy, holding out 500 images per class:

    python recipes/supcon_cifar.py --dataset=folder:/tmp/cifar10 --epochs=100 \
        --batch_size=512 --width=64 --strategy=mirrored

Same as `python recipes/pretrain.py --base=supcon --temperature=0.1 --noblur`, but exports
to `saved_models/supcon_cifar` and adds `method` to the JSON line.
"""

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import pretrain
import recipe_config
from absl import app
from absl import flags

flags.DEFINE_alias("method", "base")
FLAGS = flags.FLAGS

DEFAULTS = {
    "base": "supcon", "temperature": 0.1, "blur": False, "learning_rate": 0.125,
    "cosine_floor": 1e-3,
}
# SupContrast warms up for 10 epochs when the batch is larger than 256.
WARMUP_EPOCHS, WARMUP_ABOVE_BATCH = 10, 256
METHODS = ("supcon", "simclr")


def main(argv):
    del argv
    if not FLAGS["warmup_epochs"].present and FLAGS.batch_size > WARMUP_ABOVE_BATCH:
        FLAGS.warmup_epochs = min(WARMUP_EPOCHS, FLAGS.epochs)
    config = recipe_config.config_from_flags("supcon_cifar")
    pretrain_config = recipe_config.pretrain_config_from_flags(config)
    if pretrain_config.base not in METHODS:
        raise ValueError(
            f"supcon_cifar.py trains --method=supcon or --method=simclr (use pretrain.py for "
            f"the other bases). Received: --method={pretrain_config.base}"
        )
    pretrain.run(config, pretrain_config, extra={"method": pretrain_config.base})


if __name__ == "__main__":
    recipe_flags.set_defaults(DEFAULTS)
    app.run(main)
