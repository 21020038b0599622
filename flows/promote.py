"""The promotion flow: the challenger becomes champion only if it beats it on the same holdout."""

from prefect import flow

from ferry.config import FerryConfig
from flows.common import log_to_prefect, mlflow_run
from tasks.data import log_validation, resolve_data, validate_data
from tasks.promotion import promote as promote_task
from tasks.promotion import rollback as rollback_task


@flow(name="ferry-promote")
def promote(cfg: FerryConfig) -> dict:
    """Validate the newest data version, score challenger and champion on its test split,
    record the decision and move `champion` only if the gates pass."""
    with mlflow_run(cfg, kind="promotion") as run_id:
        version = resolve_data(cfg, run_id)
        prepared = log_validation(cfg, version, validate_data(cfg, version, run_id), run_id)
        cfg = prepared.bind(cfg)
        decision = promote_task(cfg, version, prepared, run_id)
    return decision


@flow(name="ferry-rollback")
def rollback(cfg: FerryConfig) -> dict:
    """Move `champion` back to the previous champion."""
    log_to_prefect()
    return rollback_task(cfg)
