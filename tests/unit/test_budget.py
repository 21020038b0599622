"""``train.epochs: auto``: enough optimizer steps for the data, early stopping, a time budget."""

import types

import pytest
import torch

from ferry.config import FerryConfig, TrainConfig
from ferry.transfer import loop
from ferry.transfer.budget import DEFAULT_TIME_BUDGET_S, plan_epochs
from ferry.transfer.training import budgeted, with_min_steps


def test_the_built_in_text_data_keeps_its_two_epochs():
    """3,890 training rows, 2 classes (the default job): the old default of 2 epochs, and
    so is every 2-class set from 3,169 rows up (100 steps an epoch or more)."""
    plan = plan_epochs(TrainConfig(), 3890, 2)
    assert (plan.epochs, plan.passes_per_epoch, plan.steps) == (2, 1, 244)
    assert plan.auto and plan.time_budget_s == DEFAULT_TIME_BUDGET_S
    assert "3,890 training rows" in plan.reason and "2 epochs" in plan.reason
    assert plan_epochs(TrainConfig(), 3169, 2).epochs == 2
    assert plan_epochs(TrainConfig(), 3168, 2).epochs == 3


def test_small_data_gets_more_epochs_and_big_data_fewer():
    """The issue's 1k-row set got 54 steps from 2 epochs; auto gives it the step floor."""
    small, mid, big = (plan_epochs(TrainConfig(), n, 2) for n in (864, 3938, 200_000))
    assert small.epochs == 8 and small.steps >= 200  # 27 steps an epoch
    assert small.epochs > mid.epochs >= big.epochs == 2  # never fewer than 2: validation picks
    assert all(p.passes_per_epoch == 1 for p in (small, mid, big))


def test_the_floor_scales_with_the_number_of_classes():
    two, ten = plan_epochs(TrainConfig(), 2430, 2), plan_epochs(TrainConfig(), 2430, 10)
    assert (two.epochs, ten.epochs) == (3, 14)  # 76 steps an epoch: floors of 200 and 1000
    assert ten.steps >= 1000 and "10 classes need at least 1000 steps" in ten.reason
    assert plan_epochs(TrainConfig(), 2430, 1).epochs == two.epochs  # counted as 2 at least


def test_tiny_data_hits_the_epoch_cap_and_passes_over_the_data_instead():
    plan = plan_epochs(TrainConfig(max_epochs=10), 16, 2)  # 1 batch an epoch
    assert plan.epochs == 10 and plan.passes_per_epoch == 20 and plan.steps == 200
    assert "passes over the data" in plan.reason


def test_a_measured_step_time_caps_the_epochs_by_the_time_budget():
    cfg = TrainConfig(time_budget_s=100)
    assert plan_epochs(cfg, 864, 2).epochs == 8
    plan = plan_epochs(cfg, 864, 2, step_seconds=1.0)  # 27 s an epoch: 3 fit in 100 s
    assert plan.epochs == 3 and "fits 3 epochs in 100 s" in plan.reason
    assert plan_epochs(cfg, 864, 2, step_seconds=1000).epochs == 1  # always at least one


def test_integer_epochs_are_used_as_they_are():
    cfg = FerryConfig(train=TrainConfig(epochs=5, passes_per_epoch=2))
    plan = plan_epochs(cfg.train, 20, 10, step_seconds=100.0)
    assert (plan.epochs, plan.passes_per_epoch, plan.time_budget_s, plan.auto) == (5, 2, None,
                                                                                   False)
    resolved, _ = budgeted(cfg, 20)
    assert resolved is cfg  # identical config: identical checkpoints and results
    assert with_min_steps(FerryConfig(train=TrainConfig(epochs=2)), 16, 100).train.model_dump() \
        == TrainConfig(epochs=2, passes_per_epoch=50, select_on="accuracy").model_dump()


def test_auto_resolves_to_an_integer_config_for_the_loop_and_the_checkpoints():
    cfg, plan = budgeted(FerryConfig(), 864)
    assert cfg.train.epochs == plan.epochs == 8 and cfg.train.time_budget_s == 3600
    again, _ = budgeted(cfg, 864)
    assert again == cfg  # resolving twice (flow step, then training) changes nothing
    curve = with_min_steps(FerryConfig(), 16, 100)  # auto's own floor beats the curve's
    assert curve.train.epochs * curve.train.passes_per_epoch >= 200


@pytest.mark.parametrize("value", ["auto", 3, "4"])
def test_epochs_accepts_auto_or_a_whole_number(value):
    assert TrainConfig(epochs=value).epochs in ("auto", 3, 4)


def _tiny_fit(cfg: TrainConfig, clock: types.SimpleNamespace):
    """A linear model on 32 separable points, with a fake clock: every reading is 1 s later."""
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    batch = {"x": x, "labels": (x[:, 0] > 0).long()}

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(4, 2)

        def forward(self, b):
            return self.head(b["x"])

    net = Net()
    groups = [{"params": list(net.parameters()), "lr": 0.1, "weight_decay": 0.0}]
    calls = iter(range(1, 10_000))
    clock.perf_counter = lambda: float(next(calls))
    return loop.fit(net, groups, lambda epoch: [batch], 1, lambda m: {"val_accuracy": 0.5},
                    cfg, None)


def test_the_loop_stops_before_an_epoch_would_end_past_the_time_budget(monkeypatch):
    clock = types.SimpleNamespace()
    monkeypatch.setattr(loop, "time", clock)
    cfg = TrainConfig(epochs=10, patience=100, device="cpu", time_budget_s=10)
    result = _tiny_fit(cfg, clock)
    # 3 clock readings an epoch: after two epochs 7 s are spent, a third would end at 10.5 s
    assert len(result.history) == 2 and result.out_of_time and result.stopped_early
    free = _tiny_fit(cfg.model_copy(update={"time_budget_s": None}), clock)
    assert len(free.history) == 10 and not free.out_of_time
