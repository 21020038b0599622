"""Receipt statistics: paired bootstrap interval, MMD^2 permutation test, MMD alignment loss."""

import numpy as np
import pytest
import torch

from ferry.evaluation.receipt import paired_bootstrap
from ferry.evaluation.shift import mmd_test
from ferry.transfer.adaptation import mmd2


def _predictions(n, acc_a, acc_b, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < acc_a, y, 1 - y)
    b = np.where(rng.random(n) < acc_b, y, 1 - y)
    return y, a, b


def test_bootstrap_interval_brackets_the_gain_and_flags_negative_transfer():
    y, a, b = _predictions(500, 0.9, 0.6)
    gain, low, high = paired_bootstrap(y, a, b, 2000, 0.95, 0)
    assert gain == pytest.approx((a == y).mean() - (b == y).mean())
    assert 0 < low < gain < high
    gain, low, high = paired_bootstrap(y, b, a, 2000, 0.95, 0)  # swapped: clearly worse
    assert high < 0 < -gain
    same = paired_bootstrap(y, a, a, 500, 0.95, 0)
    assert same == (0.0, 0.0, 0.0)


def test_bootstrap_interval_widens_with_confidence():
    y, a, b = _predictions(300, 0.8, 0.75)
    _, low90, high90 = paired_bootstrap(y, a, b, 2000, 0.90, 1)
    _, low99, high99 = paired_bootstrap(y, a, b, 2000, 0.99, 1)
    assert low99 < low90 and high99 > high90


def test_mmd_permutation_test_detects_a_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    same = mmd_test(rng.normal(size=(150, 16)), rng.normal(size=(150, 16)), 200, 0)
    shifted = mmd_test(rng.normal(size=(150, 16)), rng.normal(0.4, 1, size=(150, 16)), 200, 0)
    assert same.p_value > 0.05 and shifted.p_value < 0.05
    assert shifted.mmd2 > same.mmd2
    assert 1 / 201 <= shifted.p_value <= 1  # (1 + #exceed) / (1 + permutations): never 0
    with pytest.raises(ValueError, match="at least 2"):
        mmd_test(np.zeros((1, 3)), np.zeros((5, 3)))


def test_mmd_alignment_loss_is_differentiable_and_zero_for_equal_batches():
    x = torch.randn(16, 8, requires_grad=True)
    y = torch.randn(16, 8) + 2.0
    loss = mmd2(x, y)
    loss.backward()
    assert loss.item() > 0.1 and x.grad is not None and x.grad.abs().sum() > 0
    assert mmd2(y, y.clone()).item() == pytest.approx(0.0, abs=1e-6)
