"""Contrastive losses: each a per-sample function and a `keras.losses.Loss`."""
