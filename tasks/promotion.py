"""Promotion tasks: champion vs challenger on one holdout, and rollback."""

from prefect import task

from ferry import release, steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion


@task(name="promote")
def promote(cfg: FerryConfig, version: DataVersion, prepared: steps.Prepared,
            run_id: str) -> dict:
    """Score both on the same test split, decide by the gates, move `champion` last."""
    return release.promote(cfg, version, prepared, run_id)


@task(name="rollback")
def rollback(cfg: FerryConfig) -> dict:
    """Point `champion` back at the previous champion."""
    return release.rollback(cfg)


@task(name="retrain_check")
def retrain_check(cfg: FerryConfig) -> dict:
    """Skip training when the data version equals the champion's; say which it is."""
    from prefect import get_run_logger

    check = release.retrain_check(cfg)
    get_run_logger().info(check["reason"])
    return check
