"""Scoring runs: one finished MLflow run per scored batch, in its own experiment.

Kept apart from the training experiment (``monitor.experiment``, default
``<tracking.experiment>-scoring``) so that the training runs' comparison views stay about
training, while every batch a model answered, with its drift figures, is one list to sort.
The run is written in one go after the Parquet file is in place: a batch that failed
validation leaves no run behind, a crash while logging leaves a FAILED one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Param

from ferry.config import FerryConfig
from ferry.tracking.runs import Tracker

# The MLflow UI's view for a classifier's runs (the training experiment is "finetuning").
KIND = {"mlflow.experimentKind": "classification"}


@dataclass
class ScoringRecord:
    """What one scoring run holds."""

    name: str
    params: dict[str, Any]
    metrics: dict[str, float]
    tags: dict[str, str]
    files: list[Path] = field(default_factory=list)  # under scoring/
    report: Path | None = None  # the batch's validation report folder, under validation/
    inputs: Any = None  # the scored rows (a DataFrame), logged as the run's dataset
    source: str = ""  # the input's path
    digest: str = ""  # the input's md5


def experiment_name(cfg: FerryConfig) -> str:
    return cfg.monitor.experiment or f"{cfg.tracking.experiment}-scoring"


def log_scoring(cfg: FerryConfig, root: Path, record: ScoringRecord) -> tuple[str, str]:
    """Create, fill and finish the scoring run; (run id, its link in the MLflow UI)."""
    tracker = Tracker(cfg, root)
    mc = tracker.mc
    run_id = mc.create_run(_experiment(tracker, experiment_name(cfg)), run_name=record.name,
                           tags={"ferry.kind": "scoring", "mlflow.source.name": "flows/score.py",
                                 "mlflow.source.type": "LOCAL", **record.tags}).info.run_id
    run = tracker.run(run_id)
    try:
        params = [Param(k, str(v)[:6000]) for k, v in record.params.items()]
        mc.log_batch(run_id, params=params)
        run.metrics(record.metrics)
        run.artifacts(record.files, "scoring")
        if record.report is not None:
            run.artifacts([record.report], "validation")
        if record.inputs is not None:
            _log_input(mc, run_id, record)
    except BaseException:
        run.end(False)
        raise
    run.end(True)
    return run_id, tracker.link(run_id)


def _experiment(tracker: Tracker, name: str) -> str:
    """The scoring experiment, created on first use beside the training one's artifacts."""
    mc = tracker.mc
    exp = mc.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if mc.tracking_uri.startswith("sqlite:"):
        location = (tracker.root / "mlruns" / "artifacts").resolve().as_uri()
    try:
        return mc.create_experiment(name, artifact_location=location, tags=KIND)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
        return mc.get_experiment_by_name(name).experiment_id


def _log_input(mc: Any, run_id: str, record: ScoringRecord) -> None:
    """The scored batch as the run's dataset (context ``scoring``), its md5 as the digest:
    the run page's "Datasets" then names the file and the exact bytes that were scored."""
    import warnings

    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():  # MLflow registers its local-file source twice, and says so
        warnings.filterwarnings("ignore", "The specified dataset source can be interpreted")
        dataset = mlflow.data.from_pandas(record.inputs, name=Path(record.source).name,
                                          source=str(Path(record.source).absolute()),
                                          digest=record.digest[:36])
    mc.log_inputs(run_id, datasets=[DatasetInput(dataset._to_mlflow_entity(), tags=[
        InputTag("mlflow.data.context", "scoring")])])
