"""Runs: a ``Tracker`` for one config's store, and a ``RunLog`` bound to one run.

Every call names its run id explicitly (no fluent "active run"), because Prefect may run tasks
in other threads. A step builds the tracker once (``Tracker(cfg)``), takes the run it logs
into (``tracker.run(run_id)``) and logs through it; nothing else passes ``(cfg, root)`` on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag

from ferry.config import FerryConfig
from ferry.tracking.client import client, experiment_id, tracking_uri
from ferry.tracking.registry import Registry


class Tracker:
    """MLflow for the store a config names: runs, decisions and (``registry``) models."""

    def __init__(self, cfg: FerryConfig, root: Path | None = None) -> None:
        self.cfg = cfg
        self.root = root or Path.cwd()
        self.mc = client(cfg, self.root)

    @property
    def uri(self) -> str:
        return tracking_uri(self.cfg, self.root)

    @property
    def registry(self) -> Registry:
        """The configured registered model (``tracking.model_name``)."""
        return self.model(self.cfg.tracking.model_name)

    def model(self, name: str) -> Registry:
        """A registered model of this store by name."""
        return Registry(self.mc, self.cfg, name)

    def experiment(self) -> str:
        return experiment_id(self.mc, self.cfg, self.root)

    def start_run(self, run_name: str, tags: dict[str, str]) -> str:
        """Create the run, log the flattened config as params and the YAML as an artifact."""
        run = self.mc.create_run(self.experiment(), run_name=run_name, tags=tags)
        run_id = run.info.run_id
        params = [Param(k, v[:6000]) for k, v in self.cfg.flat().items()]
        for start in range(0, len(params), 100):
            self.mc.log_batch(run_id, params=params[start:start + 100])
        self.mc.log_text(run_id, self.cfg.public_yaml(), "config.yaml")
        return run_id

    def run(self, run_id: str) -> RunLog:
        return RunLog(self, run_id)

    def run_status(self, run_id: str) -> str | None:
        """The run's status (RUNNING, FINISHED, ...), or None when this store has no such
        active run; an outage or refused credentials raise as themselves."""
        try:
            run = self.mc.get_run(run_id)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            return None
        return run.info.status if run.info.lifecycle_stage == "active" else None

    def reopen(self, run_id: str) -> None:
        """Mark a closed run RUNNING again (a resumed search logs into its old run)."""
        self.mc.update_run(run_id, status="RUNNING")

    def link(self, run_id: str) -> str:
        """Where the run's page is in the MLflow UI. MLflow 3's UI opens an experiment by the
        browser's GenAI / model-training switch (default GenAI) rather than by
        ``mlflow.experimentKind``, so the link says ``workflowType=machine_learning``. A
        local store has no server: the link assumes ``mlflow ui`` on its default port."""
        uri = self.uri
        base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else \
            "http://127.0.0.1:5000"
        experiment = self.mc.get_run(run_id).info.experiment_id
        return f"{base}/#/experiments/{experiment}/runs/{run_id}?workflowType=machine_learning"

    def record_decision(self, kind: str, name: str, metrics: dict,
                        tags: dict[str, Any]) -> str:
        """A finished run holding a promotion or rollback decision (scores as metrics, the
        decision and reason as tags), in the task's experiment beside its training runs."""
        run = self.mc.create_run(self.experiment(),
                                 run_name=f"{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                                 tags={"ferry.kind": kind, **{k: str(v) for k, v in tags.items()}})
        self.run(run.info.run_id).metrics(metrics)
        self.mc.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id


class RunLog:
    """Logging into one run: tags, metrics (a step each), artifacts, datasets, its end."""

    def __init__(self, tracker: Tracker, run_id: str) -> None:
        self.tracker, self.run_id, self.mc = tracker, run_id, tracker.mc

    def tags(self, tags: dict[str, Any]) -> None:
        self.mc.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for start in range(0, len(batch), 500):
            self.mc.log_batch(self.run_id, metrics=batch[start:start + 500])

    def epoch_logger(self, prefix: str = "") -> Callable[[int, dict], None]:
        """Callback for the training loop: per-epoch metrics with the epoch as step."""
        def log(epoch: int, record: dict) -> None:
            self.metrics({f"{prefix}{k}": v for k, v in record.items() if k != "epoch"},
                         step=epoch)
        return log

    def artifacts(self, paths: list[Path], folder: str) -> None:
        for path in paths:
            if path.is_dir():
                self.mc.log_artifacts(self.run_id, str(path), folder)
            elif path.is_file():
                self.mc.log_artifact(self.run_id, str(path), folder)

    def end(self, ok: bool) -> None:
        self.mc.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")

    def datasets(self, splits: dict[str, Any], source: dict[str, str], digest: str,
                 targets: str) -> None:
        """Each split as an MLflow dataset input (context train/validation/test), with the
        DVC-tracked file as its source and the data version's md5 as its digest: the run
        page's "Datasets" then says what the model learned from and was scored on."""
        from mlflow.entities import DatasetInput, InputTag

        from ferry.tracking.datasets import DvcSource

        stem = Path(source["path"]).stem
        inputs = [DatasetInput(mlflow.data.from_pandas(
            frame, source=DvcSource(**source), targets=targets, name=f"{stem}-{context}",
            digest=digest[:36])._to_mlflow_entity(),
            tags=[InputTag("mlflow.data.context", context)]) for context, frame in splits.items()]
        self.mc.log_inputs(self.run_id, datasets=inputs)
