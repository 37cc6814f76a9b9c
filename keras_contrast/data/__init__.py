"""keras_contrast.data."""
