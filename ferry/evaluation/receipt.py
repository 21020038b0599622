"""The transfer receipt: how much pretrained knowledge helped, with its uncertainty.

The gain is the test accuracy of the transferred model minus that of the scratch model on the
same test examples. Its interval comes from a paired bootstrap over test examples (both models
are scored on the same resample), which is what makes small gains on small test sets honest:
when the whole interval lies below zero, the run is tagged ``negative_transfer``.
"""

from __future__ import annotations

import numpy as np


def paired_bootstrap(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                     samples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(accuracy(a) - accuracy(b), lower, upper) with a percentile bootstrap interval."""
    diff = (pred_a == y_true).astype(np.float64) - (pred_b == y_true).astype(np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(low), float(high)
