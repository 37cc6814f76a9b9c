"""Max deviation of supcon_loss from the NumPy reference, and MirroredStrategy vs one device.

    PYTHONPATH=. python bench/supcon_reference_check.py

Uses the loop-based reference and the 2-replica helpers of the test suite; prints one line
per figure (the figures quoted in the closing note of the SupCon issue).
"""
import itertools, numpy as np, tensorflow as tf
from tests import harness
harness.configure_logical_cpus(2)
from tests.losses.test_supcon import reference_supcon, random_features, LABELS
from tests.losses import test_supcon_distributed as d
from keras_contrast.losses import supcon_loss
dev64 = dev32 = 0.0
labels_opts = {"int": LABELS, "onehot": np.eye(4)[LABELS], "none": None}
for (ln, lab), mode, bt, summ, den, cap in itertools.product(labels_opts.items(), ["all","one"], [None, 0.07], ["outside","inside"], ["all","one_positive","only_negatives"], [None, 2]):
    f = random_features(8, 3, 5, seed=1)
    ref = reference_supcon(lab, f, 0.1, bt, mode, summ, den, cap)
    kw = dict(base_temperature=bt, contrast_mode=mode, summation_location=summ, denominator_mode=den, positives_cap=cap)
    a64 = supcon_loss(lab, tf.constant(f, tf.float64), 0.1, **kw).numpy()
    a32 = supcon_loss(lab, tf.constant(f, tf.float32), 0.1, **kw).numpy()
    dev64 = max(dev64, np.max(np.abs(a64 - ref))); dev32 = max(dev32, np.max(np.abs(a32 - ref)))
print(f"max |loss - numpy ref| over 144 option combinations: float64 {dev64:.2e}, float32 {dev32:.2e}")
x, y, k = d.make_data()
for lab in (True, False):
    el, eg = d.one_device(x, y if lab else None, k)
    ml, mg = d.mirrored(x, y, k, labels=lab)
    print(f"mirrored(2) vs one device, labels={lab}: loss {np.max(np.abs(ml-el)):.2e}, grad {np.max(np.abs(mg-eg)):.2e}, grad scale {np.max(np.abs(eg)):.2e}")
ll, lg = d.mirrored(x, y, k, gather=False)
el, eg = d.one_device(x, y, k)
print(f"without gather: loss differs by {np.max(np.abs(ll-el)):.2e}, grad by {np.max(np.abs(lg-eg)):.2e}")
