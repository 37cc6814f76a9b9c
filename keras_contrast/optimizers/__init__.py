"""Optimizers not in Keras core."""

from keras_contrast.optimizers.lars import LARS
from keras_contrast.optimizers.torch_sgd import TorchSGD
