"""keras_contrast.models."""
