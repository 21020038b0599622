"""The Prefect transfer flow end to end on a tiny model: tracking, registry, caching, receipts."""

from __future__ import annotations

import pytest

from ferry import tracking
from ferry.config import load_config
from tests.conftest import review_rows, tiny_overrides, write_csv


@pytest.fixture
def tiny_project(project, tiny_bert, prefect_harness):
    data = write_csv(project / "reviews.csv", review_rows(200))
    return project, tiny_overrides(tiny_bert, data)


def _run(overrides):
    from flows.transfer import transfer

    cfg = load_config(None, overrides)
    return cfg, transfer(cfg)


def _task_states(name: str) -> list[str]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_task_runs(limit=200) if r.name.startswith(name)]
    return [r.state.name for r in sorted(runs, key=lambda r: r.created)]


def test_flow_tracks_registers_and_predicts_by_alias(tiny_project):
    root, overrides = tiny_project
    cfg, result = _run(overrides)
    assert result["model"] == {"name": "tiny", "version": "1", "alias": "challenger"}
    assert result["metrics"]["test_accuracy"] >= 0.8  # cue words make the task learnable

    mc = tracking.client(cfg, root)
    run = mc.get_run(result["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.lr"] == "0.003" and run.data.params["strategy.name"] == "full"
    tags = run.data.tags
    assert tags["data.md5"] == result["data_md5"] and len(tags["code.git_rev"]) > 0
    assert tags["pretrained.sha256"] == result["pretrained_sha256"]
    assert tags["ferry.strategy"] == "full" and tags["pretrained.source"].startswith("local:")
    history = mc.get_metric_history(result["run_id"], "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    for key in ("test_accuracy", "test_macro_f1", "test_recall_fresh", "test_precision_rotten"):
        assert key in run.data.metrics
    names = {a.path for a in mc.list_artifacts(result["run_id"])}
    assert {"config.yaml", "validation", "evaluation"} <= names
    evaluation = {a.path for a in mc.list_artifacts(result["run_id"], "evaluation/transfer")}
    assert "evaluation/transfer/confusion_matrix.png" in evaluation
    assert "evaluation/transfer/classification_report.txt" in evaluation
    assert "evaluation/transfer/learning_curves.png" in evaluation
    assert "model_card.md" in names
    assert any(k.startswith("system/cpu_utilization") for k in run.data.metrics), \
        sorted(run.data.metrics)
    assert mc.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == \
        "finetuning"
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["test", "train", "validation"]
    assert {d.digest for d in inputs.values()} == {result["data_md5"]}
    assert inputs["train"].source_type == "dvc" and '"md5"' in inputs["train"].source
    assert tags["mlflow.source.name"] == "flows/transfer.py" and tags["mlflow.user"]
    description = mc.get_registered_model("tiny").description
    assert "fresh" in description and "rotten" in description and "classification" in description
    version = mc.get_model_version("tiny", "1")
    assert version.tags["data.md5"] == result["data_md5"]
    assert version.tags["pretrained.sha256"] == result["pretrained_sha256"]

    model = tracking.Tracker(cfg, root).model("tiny").load("challenger")
    preds = model.predict(["the movie was great and superb", "awful dull boring film"])
    assert preds == ["fresh", "rotten"]
    assert model.metadata.signature is not None


def test_scratch_baseline_logs_transfer_gain(tiny_project):
    root, overrides = tiny_project
    cfg, result = _run([*overrides, "baseline=scratch", "train.epochs=auto",
                        "train.min_steps_per_class=10"])  # (160 rows: 2 epochs, as before)
    m = result["metrics"]
    assert m["transfer_gain"] == pytest.approx(m["test_accuracy"] - m["scratch_test_accuracy"])
    run = tracking.client(cfg, root).get_run(result["run_id"])
    assert "scratch_val_accuracy" in run.data.metrics and "transfer_gain" in run.data.metrics
    # the classical receipt, on the same test rows: TF-IDF learns the cue words too
    assert m["classical_test_accuracy"] >= 0.8 and 0 < m["classical_test_macro_f1"] <= 1
    assert m["gain_over_classical"] == pytest.approx(m["test_accuracy"] -
                                                     m["classical_test_accuracy"])
    assert m["gain_over_classical_ci_low"] <= m["gain_over_classical"] <= \
        m["gain_over_classical_ci_high"]
    assert run.data.metrics["gain_over_classical"] == pytest.approx(m["gain_over_classical"])
    tags = run.data.tags
    assert tags["ferry.beats_classical"] == str(m["gain_over_classical"] > 0).lower()
    assert tags["ferry.classical"].startswith("TF-IDF + logistic regression (")
    assert "train.epochs=auto: 160 training rows" in tags["ferry.budget.reason"]
    assert tags["ferry.budget.epochs"] == "2"  # 10 steps an epoch, a floor of 20 steps
    assert run.data.metrics["planned_epochs"] == run.data.metrics["scratch_planned_epochs"] == 2
    assert len(tracking.client(cfg, root).get_metric_history(run.info.run_id,
                                                             "val_accuracy")) == 2
    card = tracking.client(cfg, root).get_model_version(cfg.tracking.model_name,
                                                        result["model"]["version"]).description
    assert "## Classical baseline" in card and "Gain over it" in card
    assert "auto: 2 planned" in card


def test_linear_probe_rerun_hits_the_caches(tiny_project):
    root, overrides = tiny_project
    probe = [*overrides, "strategy.name=linear_probe", "strategy.linear_probe.epochs=5"]
    _run(probe)
    features = list((root / ".ferry" / "cache" / "features").glob("*.pt"))
    assert len(features) == 1
    stamp = features[0].stat().st_mtime_ns
    _, result = _run(probe)
    assert _task_states("extract_features")[-2:] == ["Completed", "Cached"]
    assert _task_states("retrieve_pretrained")[-1] == "Cached"
    assert features[0].stat().st_mtime_ns == stamp
    assert result["model"]["version"] == "2"
    cfg = load_config(None, probe)  # the reused training still shows its curves in the new run
    history = tracking.client(cfg, root).get_metric_history(result["run_id"], "val_accuracy")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("strategy", ["freeze_bottom", "gradual_unfreeze"])
def test_other_strategies_run_through_the_flow(tiny_project, strategy):
    root, overrides = tiny_project
    extra = [f"strategy.name={strategy}", "strategy.freeze_bottom.frozen_layers=1",
             "train.epochs=8", "train.patience=8", "strategy.layer_decay=0.8",
             f"tracking.model_name=tiny-{strategy}", "baseline=none", "shift.enabled=false"]
    cfg, result = _run([*overrides, *extra])
    run = tracking.client(cfg, root).get_run(result["run_id"])
    assert run.data.tags["ferry.strategy"] == strategy
    assert run.data.params["strategy.layer_decay"] == "0.8"
    model = tracking.Tracker(cfg, root).model(f"tiny-{strategy}").load("challenger")
    assert model.predict(["great superb film", "dull boring plot"]) == ["fresh", "rotten"]
