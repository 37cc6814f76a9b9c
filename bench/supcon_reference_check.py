"""Max deviation of supcon_loss from the NumPy reference, and MirroredStrategy vs one device.

    PYTHONPATH=. python bench/supcon_reference_check.py

Uses the loop-based reference and the 2-replica helpers of the test suite; prints one line
per figure (the figures quoted in the closing note of the SupCon issue).
"""

import itertools

import numpy as np
import tensorflow as tf

from tests import harness

harness.configure_logical_cpus(2)  # Before any TensorFlow op runs.

from keras_contrast.losses import supcon_loss  # noqa: E402
from tests.losses import test_supcon_distributed as distributed  # noqa: E402
from tests.losses.test_supcon import LABELS, random_features, reference_supcon  # noqa: E402


def reference_deviation():
    """Max |supcon_loss - reference| over every option combination, float64 and float32."""
    labels_options = {"int": LABELS, "onehot": np.eye(4)[LABELS], "none": None}
    deviation = {tf.float64: 0.0, tf.float32: 0.0}
    options = itertools.product(
        labels_options.values(),
        ["all", "one"],  # contrast_mode
        [None, 0.07],  # base_temperature
        ["outside", "inside"],  # summation_location
        ["all", "one_positive", "only_negatives"],  # denominator_mode
        [None, 2],  # positives_cap
    )
    features = random_features(8, 3, 5, seed=1)
    for labels, mode, base, summation, denominator, cap in options:
        expected = reference_supcon(labels, features, 0.1, base, mode, summation, denominator, cap)
        for dtype in deviation:
            actual = supcon_loss(
                labels,
                tf.constant(features, dtype),
                0.1,
                base_temperature=base,
                contrast_mode=mode,
                summation_location=summation,
                denominator_mode=denominator,
                positives_cap=cap,
            )
            deviation[dtype] = max(deviation[dtype], np.max(np.abs(actual.numpy() - expected)))
    return deviation


def main():
    deviation = reference_deviation()
    print(
        "max |loss - numpy ref| over 144 option combinations: "
        f"float64 {deviation[tf.float64]:.2e}, float32 {deviation[tf.float32]:.2e}"
    )
    x, y, k = distributed.make_data()
    for with_labels in (True, False):
        loss, grad = distributed.one_device(x, y if with_labels else None, k)
        mirrored_loss, mirrored_grad = distributed.mirrored(x, y, k, labels=with_labels)
        print(
            f"mirrored(2) vs one device, labels={with_labels}: "
            f"loss {np.max(np.abs(mirrored_loss - loss)):.2e}, "
            f"grad {np.max(np.abs(mirrored_grad - grad)):.2e}, "
            f"grad scale {np.max(np.abs(grad)):.2e}"
        )
    loss, grad = distributed.one_device(x, y, k)
    local_loss, local_grad = distributed.mirrored(x, y, k, gather=False)
    print(
        f"without gather: loss differs by {np.max(np.abs(local_loss - loss)):.2e}, "
        f"grad by {np.max(np.abs(local_grad - grad)):.2e}"
    )


if __name__ == "__main__":
    main()
