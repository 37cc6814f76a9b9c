"""Optimizers not in Keras core."""

from keras_contrast.optimizers.lars import LARS
