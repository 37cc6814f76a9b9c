r"""MixCo: MoCo-v2 (or SimCLR) pretraining with mixed semi-positives, linear eval, export.

    python recipes/mixco_cifar.py                       # MoCo-v2 + MixCo on the shipped sample
    python recipes/mixco_cifar.py --base=simclr         # SimCLR + MixCo (no queue)
    python recipes/mixco_cifar.py --nomixco             # the MoCo-v2 baseline

Ends with one JSON line: the linear-evaluation accuracy and the export path.
"""

from absl import app
from absl import flags

import common

flags.DEFINE_enum("base", "moco", ["moco", "simclr"], "Contrastive base method.")
flags.DEFINE_bool("mixco", True, "Add MixCo's mix loss (--nomixco: the base alone).")
flags.DEFINE_integer("queue_size", 4096, "MoCo queue length (a multiple of --batch_size).")
flags.DEFINE_float("moco_momentum", 0.99, "EMA momentum of the key encoder.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = common.config_from_flags("mixco_cifar")
    common.run_moco_recipe(
        config,
        mixco=FLAGS.mixco,
        base=FLAGS.base,
        queue_size=FLAGS.queue_size,
        momentum=FLAGS.moco_momentum,
    )


if __name__ == "__main__":
    flags.FLAGS.set_default("temperature", 0.2)
    app.run(main)
