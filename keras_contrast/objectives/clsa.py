"""CLSA's distribution-divergence (DDM) add-on: weak views supervise strong views."""

import keras
import tensorflow as tf

from keras_contrast.losses.ddm import ddm_loss
from keras_contrast.models.trainer import check_number
from keras_contrast.objectives.objective import Objective


@keras.saving.register_keras_serializable(package="keras_contrast")
class CLSA(Objective):
    """CLSA: the weak view's similarity distribution over the key set supervises the strong's.

    For every contrast pair of the base (anchors `w_i` from a weak view, key set `K`) and
    every strong crop `s` of the batch (`"strong"`: one view or a tuple of crops, any
    sizes the encoder takes), with `v_i = embed(s)_i` on the anchors' online path:

    ```
    p_i     = softmax(stop_gradient(w_i . K^T) / T)
    ddm     = sum over pairs p of weight_p * sum over strong crops s of
              mean_i ( -sum_j p_ij * log_softmax(v_i . K^T / T)_j )
    ```

    The key set is the base's (`ContrastPair.keys`):
    - `MoCoModel` and queued `SupConModel`: the gathered batch of momentum keys followed by
      the queue, as in CLSA's reference (`model/CLSA.py`);
    - `SimCLRModel` and in-batch `SupConModel`: the other view's projections of the whole
      (gathered) batch, one pair per direction with weight 1/2;
    - `BYOLModel`, which has no negatives: the target network's projections of the other
      view over the gathered batch. The distribution of a prediction over the batch's
      targets is the closest analogue of MoCo's distribution over keys, and it needs no
      extra forward pass; BYOL's anchors are its (normalised) predictions.

    Logged by `fit` as `ddm_loss`.

    Args:
        weight: `beta`, the weight of the DDM term. Defaults to `1.0`.
        temperature: the DDM temperature `T` of both sides (CLSA's `clsa_t`). Defaults to
            `0.2`.

    Example:

    ```python
    model = keras_contrast.models.MoCoModel(encoder, add_ons=[CLSA(weight=1.0)])
    # batches {"query": weak, "key": weak, "strong": strong or (crop_1, ..., crop_5)}
    ```

    References:
        - [Wang & Qi, 2021. Contrastive Learning with Stronger Augmentations](
          https://arxiv.org/abs/2104.07713)
    """

    loss_name = "ddm_loss"

    def __init__(self, weight=1.0, temperature=0.2):
        super().__init__(weight)
        check_number("temperature", temperature)
        self.temperature = temperature

    def validate(self, trainer, views):
        if not views.strong:
            raise ValueError(
                "The CLSA add-on needs strong views in the batch under 'strong' (one view "
                "or a tuple of crops, e.g. from keras_contrast.data.ViewMaker(strong_crops="
                "...)). Received a batch without 'strong'."
            )

    def compute(self, trainer, outputs, views, training):
        strong = [outputs.embed(s, training) for s in views.strong]
        terms = []
        for pair in outputs.pairs:
            weak_similarities = tf.matmul(pair.anchors, pair.keys, transpose_b=True)
            for v in strong:
                strong_similarities = tf.matmul(v, pair.keys, transpose_b=True)
                loss = ddm_loss(weak_similarities, strong_similarities, self.temperature)
                terms.append(pair.weight * tf.reduce_mean(loss))
        return tf.add_n(terms)

    def get_config(self):
        config = super().get_config()
        config["temperature"] = self.temperature
        return config
