"""keras_contrast.objectives: add-on objectives that compose with every trainer.

Each add-on adds one weighted loss term to any `keras_contrast.models.ContrastiveTrainer`
(`SimCLRModel`, `SupConModel`, `MoCoModel`, `BYOLModel`), computed on the contrast pairs the
base offers: `trainer = MoCoModel(encoder, add_ons=[CLSA(), MixCo()])`.
"""

from keras_contrast.objectives.objective import Objective
from keras_contrast.objectives.clsa import CLSA
from keras_contrast.objectives.mixco import MixCo, mix_halves

__all__ = ["CLSA", "MixCo", "Objective", "mix_halves"]
