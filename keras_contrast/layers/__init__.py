"""keras_contrast.layers."""
