"""Tracking tasks: open and close the MLflow run, log the receipt, register the model."""

from prefect import task

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource


@task(name="start_run", retries=2, retry_delay_seconds=2)
def start_run(cfg: FerryConfig, kind: str = "transfer") -> str:
    """Create the MLflow run (params + config.yaml)."""
    return steps.start_run(cfg, kind)


@task(name="finish_run", retries=2, retry_delay_seconds=2)
def finish_run(cfg: FerryConfig, run_id: str, ok: bool) -> None:
    """Mark the run FINISHED or FAILED."""
    steps.finish_run(cfg, run_id, ok)


@task(name="transfer_gain")
def transfer_gain(cfg: FerryConfig, run_id: str, trained: steps.Trained,
                  scratch: steps.Trained) -> dict:
    """Fine-tuned minus scratch on the test split, with its bootstrap interval."""
    return steps.transfer_gain(cfg, run_id, trained, scratch)


@task(name="register")
def register(cfg: FerryConfig, trained: steps.Trained, run_id: str, version: DataVersion,
             source: PretrainedSource, metrics: dict, rows: dict[str, int] | None = None,
             split_dir: str | None = None) -> steps.Registered:
    """Log the model, its card and drift reference, register a version, move the alias (all
    or nothing)."""
    return steps.register(cfg, trained, run_id, version, source, metrics, rows, split_dir)
