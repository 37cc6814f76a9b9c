"""keras_contrast.layers: preprocessing layers for contrastive learning."""

from keras_contrast.layers.auto_augment import AutoAugment
from keras_contrast.layers.color_jitter import ColorJitter
from keras_contrast.layers.imclr_pairing import ImCLRPairing
from keras_contrast.layers.mixco_mixing import MixCoMixing
from keras_contrast.layers.multi_view import MultiView
from keras_contrast.layers.pipelines import CLSA_CROPS
from keras_contrast.layers.pipelines import clsa_strong_pipeline
from keras_contrast.layers.pipelines import weak_pipeline
from keras_contrast.layers.random_apply import RandomApply
from keras_contrast.layers.random_gaussian_blur import PerImageGaussianBlur
from keras_contrast.layers.random_resized_crop import RandomResizedCrop
from keras_contrast.layers.strong_augment import StrongAugment
