"""keras_contrast.layers: preprocessing layers for contrastive learning."""

from keras_contrast.layers.strong_augment import StrongAugment
