"""Contrastive losses: each a per-sample function and a `keras.losses.Loss`."""
from keras_contrast.losses.supcon import SupConLoss
from keras_contrast.losses.supcon import supcon_loss
from keras_contrast.losses.ddm import DistributionDivergenceLoss, ddm_loss
from keras_contrast.losses.info_nce import InfoNCELoss, info_nce_loss
from keras_contrast.losses.mixco import MixCoLoss, mixco_loss, mixco_targets
from keras_contrast.losses.byol import BYOLLoss, byol_loss
from keras_contrast.losses.queue_supcon import queue_supcon_loss
