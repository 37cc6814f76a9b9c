"""keras-contrast: contrastive learning for image classification on Keras 3."""

__version__ = "0.1.0"

from keras_contrast import data
from keras_contrast import distribute
from keras_contrast import evaluation
from keras_contrast import export
from keras_contrast import layers
from keras_contrast import losses
from keras_contrast import models
from keras_contrast import objectives
from keras_contrast import optimizers
from keras_contrast import seeds
