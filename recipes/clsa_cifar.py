r"""CLSA: MoCo-v2 with stronger augmentations and the distribution-divergence loss.

A preset of `pretrain.py` with the settings of CLSA's reference, scaled to CIFAR and a CPU:

* `--base=moco --clsa`: MoCo-v2 plus the DDM loss between the weak query's and the strong
  view's distributions over the keys (`--clsa_weight`, `--clsa_temperature`: CLSA's defaults,
  1 and 0.2);
* `--crops=single|multi` (default single), scaled to the image size: the reference's single
  run (one 96-of-224 strong crop, scale (0.086, 0.429), against the weak query), or its
  multi-crop run (five weak query crops and five strong crops, 224/192/160/128/96 with
  their area scales: 5 InfoNCE and 25 DDM terms);
* `--temperature=0.2` and `--batch_negatives` (the reference contrasts against the other
  keys of the batch as well as the queue);
* `--queue_size=4096 --moco_momentum=0.99` (the paper's ImageNet run uses 65536 and 0.999);
* `--learning_rate=0.03` per 256 examples, as CLSA's and MoCo's references.

Every `pretrain.py` flag works here too; explicit flags override these defaults.

    python recipes/clsa_cifar.py                    # single strong crop, shipped sample
    python recipes/clsa_cifar.py --crops=multi      # five strong crops of decreasing size

Same as `python recipes/pretrain.py --base=moco --clsa --temperature=0.2 --batch_negatives
--queue_size=4096 --moco_momentum=0.99`, but exports to `saved_models/clsa_cifar`. Ends with
one JSON line: the linear-evaluation accuracy, the export path and `crops`.
"""

import recipe_flags  # First: it configures TensorFlow's allocator before TensorFlow starts.
import pretrain
import recipe_config
from absl import app

DEFAULTS = {
    "base": "moco",
    "clsa": True,
    "temperature": 0.2,
    "batch_negatives": True,
    "queue_size": 4096,
    "moco_momentum": 0.99,
    "learning_rate": 0.03,
}


def main(argv):
    del argv
    config = recipe_config.config_from_flags("clsa_cifar")
    pretrain_config = recipe_config.pretrain_config_from_flags(config)
    if pretrain_config.base != "moco":
        raise ValueError(
            "clsa_cifar.py trains MoCo-v2 + CLSA (use pretrain.py --clsa for the other "
            f"bases). Received: --base={pretrain_config.base}"
        )
    pretrain.run(config, pretrain_config)


if __name__ == "__main__":
    recipe_flags.set_defaults(DEFAULTS)
    app.run(main)
