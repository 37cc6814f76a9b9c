"""Contrastive losses: each a per-sample function and a `keras.losses.Loss`."""
from keras_contrast.losses.supcon import SupConLoss
from keras_contrast.losses.supcon import supcon_loss
