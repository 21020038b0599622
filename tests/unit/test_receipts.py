"""Receipt statistics: paired bootstrap interval, MMD^2 permutation test, MMD alignment loss."""

import numpy as np
import pytest
import torch

from ferry.evaluation import receipt
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


def _two_task_record(party_pred, topic_pred):
    """A predictions.json record of two tasks (``task_metrics.predictions``): single-label
    ``party`` (the primary: labelled on every row) and multi-label ``topic`` (row 3 has no
    topic label: its ``y_true`` is None)."""
    party = {"y_true": [0, 1, 0, 1], "y_pred": party_pred}
    topic = {"y_true": [[1, 0], [0, 1], [1, 1], None], "y_pred": topic_pred}
    return {**party, "tasks": {"party": party, "topic": topic}}


def test_receipts_per_task_skip_unlabelled_rows_and_average_each_example():
    mine = _two_task_record([0, 1, 0, 0], [[1, 0], [0, 1], [1, 0], [0, 0]])
    base = _two_task_record([0, 0, 0, 0], [[1, 0], [0, 0], [1, 0], [1, 1]])
    # per example, the mean over its labelled tasks (a multi-label row: all labels right)
    assert receipt.example_correctness(mine).tolist() == [1.0, 1.0, 0.5, 0.0]
    assert receipt.example_correctness(base).tolist() == [1.0, 0.0, 0.5, 0.0]
    out = receipt.gains(mine, base, "transfer_gain", 500, 0.95, 0)
    assert out["transfer_gain"] == pytest.approx(0.25)  # (0 + 1 + 0 + 0) / 4
    assert out["transfer_gain_party"] == pytest.approx(0.25)  # 3/4 - 2/4
    # topic: row 3 is unlabelled and skipped (its predictions differ, yet count for nothing):
    # 2/3 right vs 1/3 right on the three labelled rows
    assert out["transfer_gain_topic"] == pytest.approx(1 / 3)
    for name in ("transfer_gain", "transfer_gain_party", "transfer_gain_topic"):
        assert out[f"{name}_ci_low"] <= out[name] <= out[f"{name}_ci_high"]
    assert receipt.accuracy(base) == pytest.approx((2 / 4 + 1 / 3) / 2)  # mean over tasks
    assert receipt.same_examples(mine, base)
    moved = _two_task_record([0, 1, 0, 0], [[1, 0], [0, 1], [1, 0], [0, 0]])
    moved["tasks"]["topic"]["y_true"] = [[1, 0], [0, 1], None, [1, 1]]
    assert not receipt.same_examples(mine, moved)


def test_one_task_receipt_is_the_plain_paired_bootstrap():
    """A record without ``tasks`` (one single-label task) keeps the receipt it always had."""
    y, a, b = _predictions(200, 0.85, 0.7, seed=3)
    mine = {"y_true": y.tolist(), "y_pred": a.tolist()}
    base = {"y_true": y.tolist(), "y_pred": b.tolist()}
    out = receipt.gains(mine, base, "transfer_gain", 1000, 0.95, 0)
    assert (out["transfer_gain"], out["transfer_gain_ci_low"], out["transfer_gain_ci_high"]) \
        == paired_bootstrap(y, a, b, 1000, 0.95, 0)
    assert set(out) == {"transfer_gain", "transfer_gain_ci_low", "transfer_gain_ci_high"}
    assert receipt.accuracy(base) == pytest.approx((b == y).mean())


def test_record_scores_read_the_model_and_a_baseline_alike():
    from ferry.models.tasks import Layout, Task

    layout = Layout([Task(name="party", labels=["a", "b"]),
                     Task(name="topic", labels=["x", "y"], multi=True, separator="|")])
    mine = _two_task_record([0, 1, 0, 0], [[1, 0], [0, 1], [1, 0], [0, 0]])
    s = receipt.scores(layout, mine)
    assert s["accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert s["macro_f1"] == pytest.approx(((0.8 + 2 / 3) / 2 + (1 + 2 / 3) / 2) / 2)
    with pytest.raises(ValueError, match="no labelled example"):
        receipt.paired_bootstrap_scores(np.array([np.nan]), np.array([1.0]), 10, 0.9, 0)
