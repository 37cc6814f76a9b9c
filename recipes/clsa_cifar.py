r"""CLSA: MoCo-v2 with stronger augmentations and the distribution-divergence loss.

    python recipes/clsa_cifar.py                    # single strong crop, shipped sample
    python recipes/clsa_cifar.py --crops=multi      # five strong crops of decreasing size

Ends with one JSON line: the linear-evaluation accuracy and the export path.
"""

from absl import app
from absl import flags

import common

flags.DEFINE_enum("crops", "single", ["single", "multi"], "Strong crops: one, or five sizes.")
flags.DEFINE_integer("queue_size", 4096, "MoCo queue length (a multiple of --batch_size).")
flags.DEFINE_float("moco_momentum", 0.99, "EMA momentum of the key encoder.")

FLAGS = flags.FLAGS


def main(argv):
    del argv
    config = common.config_from_flags("clsa_cifar")
    common.run_moco_recipe(
        config,
        clsa=True,
        crops=FLAGS.crops,
        queue_size=FLAGS.queue_size,
        momentum=FLAGS.moco_momentum,
        extra={"crops": FLAGS.crops},
    )


if __name__ == "__main__":
    flags.FLAGS.set_default("temperature", 0.2)
    app.run(main)
