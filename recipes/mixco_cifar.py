r"""MixCo: MoCo-v2 (or SimCLR) pretraining with mixed semi-positives, linear eval, export.

A preset of `pretrain.py` with the settings of MixCo's reference on CIFAR:

* `--base=moco|simclr` (default moco) `--mixco` (`--nomixco`: the base alone, the paper's
  baseline); the MixCo loss has MixCo's defaults (`--mixco_weight=1`,
  `--mixco_temperature=0.05`);
* the base's own temperature: 0.2 for MoCo-v2, 0.5 for SimCLR, as in the reference;
* MoCo: `--queue_size=4096 --moco_momentum=0.99` and `--learning_rate=0.03` per 256
  examples (MoCo's and MixCo's references; SimCLR keeps the shared 0.5). SimCLR has no
  queue: for the commands of the earlier version of this script, `--queue_size` /
  `--moco_momentum` are ignored (with a warning) when `--base=simclr`.

Kept different from the SimCLR-MixCo reference on purpose: it holds the learning rate flat
for its first 10 epochs before the cosine decay; here the shared schedule applies (cosine
from the first step, `--warmup_epochs` for a linear warm-up), so short CPU-sized runs are
not spent mostly at the peak rate.

Every `pretrain.py` flag works here too; explicit flags override these defaults.

    python recipes/mixco_cifar.py                       # MoCo-v2 + MixCo on the shipped sample
    python recipes/mixco_cifar.py --base=simclr         # SimCLR + MixCo (no queue)
    python recipes/mixco_cifar.py --nomixco             # the MoCo-v2 baseline

Same as `python recipes/pretrain.py --base=moco --mixco --queue_size=4096
--moco_momentum=0.99` (or `--base=simclr --mixco`), but exports to `saved_models/mixco_cifar`.
Ends with one JSON line: the linear-evaluation accuracy and the export path.
"""

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import pretrain
import recipe_config
from absl import app
from absl import flags
from absl import logging

FLAGS = flags.FLAGS

DEFAULTS = {"base": "moco", "mixco": True, "queue_size": 4096, "moco_momentum": 0.99}
MOCO_LEARNING_RATE = 0.03  # per 256 examples, as MoCo's and MixCo's references
BASES = ("moco", "simclr")
MOCO_FLAGS = ("queue_size", "moco_momentum")


def main(argv):
    del argv
    if FLAGS.base not in BASES:
        raise ValueError(
            "mixco_cifar.py trains --base=moco or --base=simclr (use pretrain.py --mixco for "
            f"the other bases). Received: --base={FLAGS.base}"
        )
    if FLAGS.base == "simclr":
        # This script's earlier version took the MoCo flags with SimCLR and ignored them.
        for name in MOCO_FLAGS:
            if FLAGS[name].present:
                logging.warning("--%s is ignored with --base=simclr.", name)
            FLAGS[name].value = None
    if FLAGS.base == "moco" and not FLAGS["learning_rate"].present:
        FLAGS.learning_rate = MOCO_LEARNING_RATE
    config = recipe_config.config_from_flags("mixco_cifar")
    pretrain.run(config, recipe_config.pretrain_config_from_flags(config))


if __name__ == "__main__":
    recipe_flags.set_defaults(DEFAULTS)
    app.run(main)
