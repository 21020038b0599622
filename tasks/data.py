"""Data tasks: make the dataset version present, then validate and split it."""

from prefect import task

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion


@task(name="resolve_data", retries=1, retry_delay_seconds=2,
      retry_condition_fn=lambda task, run, state: not _is_user_error(state))
def resolve_data(cfg: FerryConfig, run_id: str) -> DataVersion:
    """Restore or rebuild data/ and check it against data.dvc."""
    return steps.resolve_data(cfg, run_id)


@task(name="validate_data", persist_result=True,
      cache_key_fn=lambda ctx, p: steps.validation_cache_key(p["cfg"], p["version"]))
def validate_data(cfg: FerryConfig, version: DataVersion, run_id: str) -> steps.Prepared:
    """Great Expectations suites; stops the flow with a report on failure. Cached per version."""
    return steps.validate_data(cfg, version, run_id)


@task(name="log_validation", retries=2, retry_delay_seconds=2)
def log_validation(cfg: FerryConfig, version: DataVersion, prepared: steps.Prepared,
                   run_id: str) -> steps.Prepared:
    """Attach the validation report and split sizes to this run (re-validating if deleted)."""
    return steps.log_validation(cfg, version, prepared, run_id)


@task(name="hide_labels")
def hide_labels(cfg: FerryConfig, prepared: steps.Prepared, run_id: str) -> steps.Prepared:
    """Keep only self_training.label_fraction of the training labels (no-op when unset)."""
    return steps.hide_labels(cfg, prepared, run_id)


def _is_user_error(state) -> bool:
    """Bad input is not retried: only I/O hiccups are."""
    from ferry.errors import FerryError

    try:
        state.result()
    except FerryError:
        return True
    except Exception:
        return False
    return False
