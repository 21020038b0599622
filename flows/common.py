"""What every flow starts with: its MLflow run (opened and closed by one lifecycle), Ferry's
log lines forwarded to the flow run's Prefect logs, and the inputs (data version, validated
splits, pretrained source)."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource
from tasks.data import log_validation, resolve_data, validate_data
from tasks.model import retrieve_pretrained
from tasks.tracking import finish_run, start_run


@contextmanager
def mlflow_run(cfg: FerryConfig, kind: str = "transfer",
               start: Callable[[], str] | None = None) -> Iterator[str]:
    """The flow's MLflow run: FINISHED when the flow's body completes, FAILED otherwise.
    ``start`` opens it instead of a new run (the tune flow reopens its study's run)."""
    log_to_prefect()
    with steps.lifecycle(start or (lambda: start_run(cfg, kind)),
                         lambda run_id, ok: finish_run(cfg, run_id, ok)) as run_id:
        yield run_id


def log_to_prefect() -> None:
    """Send the library's ``ferry`` log records (step lines, one line per training epoch) to
    the Prefect API as logs of the flow or task run they happen in, as Prefect's
    PREFECT_LOGGING_EXTRA_LOGGERS setting would: the UI of a scheduled retrain then shows its
    training progress. Records outside any run (library use after a flow) are not sent."""
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger("ferry")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    if not any(isinstance(h, APILogHandler) for h in logger.handlers):
        handler = APILogHandler()
        handler.addFilter(_in_a_run)
        logger.addHandler(handler)


def _in_a_run(record: logging.LogRecord) -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def inputs(cfg: FerryConfig, run_id: str) -> tuple[FerryConfig, DataVersion, steps.Prepared,
                                                     PretrainedSource]:
    """Resolve the data version, validate and split it, and locate the pretrained weights;
    the config comes back with the labels the validated data carries."""
    version = resolve_data(cfg, run_id)
    prepared = log_validation(cfg, version, validate_data(cfg, version, run_id), run_id)
    return prepared.bind(cfg), version, prepared, retrieve_pretrained(cfg)
