"""Sweep, learning curve, self-training, LoRA adapters and domain adaptation, end to end."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from ferry import tracking
from ferry.config import load_config
from tests.conftest import review_rows, tiny_overrides, write_csv

ALL = "[scratch, zero_shot, linear_probe, freeze_bottom, full, gradual_unfreeze, lora]"


@pytest.fixture
def tiny_project(project, tiny_bert, prefect_harness):
    data = write_csv(project / "reviews.csv", review_rows(200))
    fast = ["shift.max_samples=40", "shift.permutations=50",
            "strategy.freeze_bottom.frozen_layers=1", "strategy.linear_probe.epochs=5"]
    return project, [*tiny_overrides(tiny_bert, data), *fast]


def test_sweep_runs_every_strategy_as_child_runs_and_registers_the_best(tiny_project):
    import flows.sweep

    root, overrides = tiny_project
    cfg = load_config(None, [*overrides, f"sweep.strategies={ALL}", "sweep.concurrency=2"])
    result = flows.sweep.run(cfg, 2)
    mc = tracking.client(cfg, root)
    rows = {r["strategy"]: r for r in result["rows"]}
    assert set(rows) == set(cfg.sweep.strategies)
    children = mc.search_runs([mc.get_run(result["run_id"]).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{result['run_id']}'")
    assert {c.data.tags["ferry.strategy"] for c in children} == set(rows)
    assert all(c.info.status == "FINISHED" for c in children)
    spans = sorted((c.info.start_time, c.info.end_time) for c in children)
    overlaps = [b[0] < a[1] for a, b in itertools.pairwise(spans)]
    assert any(overlaps), "no two strategies trained at the same time"
    assert rows["zero_shot"]["trainable_params"] == 0
    assert 0 < rows["lora"]["trainable_params"] < rows["full"]["trainable_params"]
    assert rows["linear_probe"]["trainable_params"] < rows["lora"]["trainable_params"]
    for name in set(rows) - {"scratch"}:
        assert rows[name]["transfer_gain_ci_low"] <= rows[name]["transfer_gain"]
    # one scratch model serves the baseline and the sweep's scratch member
    assert len(list((root / ".ferry" / "checkpoints").glob("scratch-*"))) == 1

    artifacts = {a.path for a in mc.list_artifacts(result["run_id"], "comparison")}
    assert {"comparison/comparison.csv", "comparison/comparison.png"} <= artifacts
    table = pd.read_csv(root / cfg.paths.reports / "sweeps" / result["run_id"] /
                        "comparison.csv")
    best = table.sort_values(["val_accuracy", "trainable_params"],
                             ascending=[False, True]).iloc[0]
    assert result["best"] == best["strategy"]
    version = mc.get_model_version("tiny", result["model"]["version"])
    assert version.run_id == best["run_id"]
    assert mc.get_registered_model("tiny").aliases["challenger"] == version.version
    model = tracking.Tracker(cfg, root).model("tiny").load("challenger")
    assert model.predict(["great superb film", "dull boring plot"]) == ["fresh", "rotten"]


def test_unmerged_lora_adapter_registers_and_predicts_by_alias(tiny_project):
    from flows.transfer import transfer

    root, overrides = tiny_project
    cfg = load_config(None, [*overrides, "strategy.name=lora", "strategy.lora.merge=false",
                             "train.epochs=3", "baseline=none"])
    result = transfer(cfg)
    model = tracking.Tracker(cfg, root).model("tiny").load("challenger")
    preds = model.predict(["the movie was great and superb", "awful dull boring film"])
    assert preds == ["fresh", "rotten"]  # the adapter, re-applied by the loader, learned
    run = tracking.client(cfg, root).get_run(result["run_id"])
    assert run.data.tags["ferry.strategy"] == "lora"


def test_curve_logs_table_and_plot_for_every_size_and_seed(tiny_project):
    import flows.curve

    root, overrides = tiny_project
    cfg = load_config(None, [*overrides, "curve.sizes=[4, all]", "curve.seeds=2",
                             "curve.min_steps=6"])
    result = flows.curve.run(cfg, 1)
    rows = {r["k"]: r for r in result["rows"]}
    assert set(rows) == {"4", "all"}
    assert rows["4"]["n_train"] == 8 and rows["all"]["n_train"] == 160
    assert all(r["seeds"] == 2 for r in rows.values())
    for r in rows.values():
        assert r["gain"] == pytest.approx(r["pretrained_accuracy"] - r["scratch_accuracy"])
    mc = tracking.client(cfg, root)
    files = {a.path for a in mc.list_artifacts(result["run_id"], "curve")}
    assert {"curve/curve.csv", "curve/curve_points.csv", "curve/curve.png"} <= files
    points = pd.read_csv(root / cfg.paths.reports / "curves" / result["run_id"] /
                         "curve_points.csv")
    assert len(points) == 2 * 2 * 2
    few = points[points["k"] == "4"]
    assert (few["steps"] >= 6).all()  # 8 examples = 1 step per epoch: min_steps applies
    assert "curve_k4_gain" in mc.get_run(result["run_id"]).data.metrics


def test_self_training_logs_every_round_on_hidden_labels(tiny_project):
    from flows.transfer import transfer

    root, overrides = tiny_project
    cfg = load_config(None, [*overrides, "self_training.enabled=true",
                             "self_training.label_fraction=0.25", "self_training.rounds=2",
                             "self_training.threshold=0.6", "train.epochs=3"])
    result = transfer(cfg)
    mc = tracking.client(cfg, root)
    run = mc.get_run(result["run_id"])
    assert run.data.metrics["data.rows_train_labelled"] == 40  # 25% of 160
    pseudo = mc.get_metric_history(result["run_id"], "self_training_pseudo_labelled")
    assert [m.step for m in pseudo] == [0, 1, 2] and pseudo[0].value == 0
    assert pseudo[1].value > 0  # the pool is 120 texts
    acc = mc.get_metric_history(result["run_id"], "self_training_pseudo_label_accuracy")
    assert acc and all(0 <= m.value <= 1 for m in acc)
    tests = mc.get_metric_history(result["run_id"], "self_training_test_accuracy")
    assert len(tests) == 3
    # the scratch baseline saw the same 40 labels, not the hidden ones, and got the
    # same budget (at least self_training.min_steps optimizer steps) as a round
    assert run.data.metrics["scratch_train_rows"] == 40
    assert run.data.metrics["train_rows"] >= 40  # the kept round: labelled + pseudo-labelled
    assert "transfer_gain" in run.data.metrics


def test_domain_adaptation_pulls_the_domains_together(tiny_project):
    """The alignment term changes what is learned: with weight 0 the features of the two
    domains stay apart; with a real weight the MMD^2 between them ends lower."""
    from flows.transfer import transfer

    root, overrides = tiny_project
    rows = [(" ".join(["acting", "the", "plot", "movie"][: 2 + i % 3]) + f" scene {i}", "")
            for i in range(60)]  # another domain: no cue words, other vocabulary
    target = write_csv(root / "target.csv", rows, header="text,unused")
    aux = {}
    for weight in (0.0, 5.0):
        cfg = load_config(None, [*overrides, f"adaptation.target_path={target}",
                                 f"adaptation.weight={weight}", "baseline=none",
                                 "train.epochs=3", f"tracking.run_name=w{weight}"])
        result = transfer(cfg)
        history = tracking.client(cfg, root).get_metric_history(result["run_id"],
                                                                "train_aux_loss")
        assert [m.step for m in history] == [1, 2, 3]
        aux[weight] = [m.value for m in history]
    print("ADAPT", aux)
    assert aux[5.0][-1] < 0.5 * aux[0.0][-1], aux
