"""Promotion tasks: champion vs challenger on one holdout, and rollback.

Both hold the model's registry lock (a Prefect global concurrency limit of 1, on whichever
Prefect API the flow runs against) from reading the champion to moving it, so concurrent
promotions are decided one after the other, each against the champion of its moment.
"""

from collections.abc import Iterator
from contextlib import contextmanager, suppress

from prefect import task

from ferry import release, steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion


@task(name="promote")
def promote(cfg: FerryConfig, version: DataVersion, prepared: steps.Prepared,
            run_id: str) -> dict:
    """Score both on the same test split, decide by the gates, move `champion` last."""
    with registry_lock(cfg.tracking.model_name):
        return release.promote(cfg, version, prepared, run_id)


@task(name="rollback")
def rollback(cfg: FerryConfig) -> dict:
    """Point `champion` back at the previous champion."""
    with registry_lock(cfg.tracking.model_name):
        return release.rollback(cfg)


@contextmanager
def registry_lock(model: str, timeout_s: float = 3600) -> Iterator[None]:
    """One champion decision per registered model at a time."""
    from prefect.client.orchestration import get_client
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    name = f"ferry-registry-{model}"
    # Prefect's upsert reads, then creates (documented as not atomic): when two first
    # promotions race, the loser's create is a 409, and the winner's limit of 1 serves.
    with get_client(sync_client=True) as client, suppress(ObjectAlreadyExists):
        client.upsert_global_concurrency_limit_by_name(name, 1)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield


@task(name="retrain_check")
def retrain_check(cfg: FerryConfig) -> dict:
    """Skip training when the data version equals the champion's; say which it is."""
    from prefect import get_run_logger

    check = release.retrain_check(cfg)
    get_run_logger().info(check["reason"])
    return check
