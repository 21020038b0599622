"""The tune flow: an Optuna study over strategies and their knobs, trials as child runs of
one parent, the best registered; ``tune_trial`` is one trial on a worker of the pool."""

import time

from prefect import flow

from ferry.config import FerryConfig
from ferry.tuning.trial import Context
from flows.common import inputs, log_to_prefect, mlflow_run
from tasks.experiments import scratch_baseline
from tasks.tuning import (
    parent_run,
    prepare_search,
    register_best,
    run_trial,
    run_trials,
    search_context,
    spread_trials,
    tune_report,
)


@flow(name="ferry-tune")
def tune(cfg: FerryConfig, began: float | None = None) -> dict:
    """Search ``tune.space`` (here, or spread over ``tune.deployment``'s workers); register
    the trial with the best validation ``train.select_on``. ``began`` (epoch seconds) is
    when the command started: ``tune.timeout_s`` counts from there."""
    began = began or time.time()
    with mlflow_run(cfg, start=lambda: parent_run(cfg)) as parent:
        cfg, version, prepared, source = inputs(cfg, parent)
        scratch = scratch_baseline(cfg, source, prepared, parent) \
            if cfg.baseline == "scratch" else None
        ctx = search_context(cfg, parent, source, prepared, scratch, began)
        todo = prepare_search(cfg, ctx)
        if cfg.tune.deployment:
            spread_trials(cfg, ctx)
        else:
            run_trials(cfg, ctx, todo)
        summary = tune_report(cfg, parent, prepared.split_key)
        best = register_best(cfg, ctx, version)
    return {"run_id": parent, **summary, **best}


@flow(name="ferry-tune-trial")
def tune_trial(cfg: FerryConfig, ctx: Context) -> str:
    """One trial of a spread search (``tune.deployment``), run by any worker of the pool."""
    log_to_prefect()
    return run_trial(cfg, ctx)


def run(cfg: FerryConfig, began: float | None = None) -> dict:
    """The tune flow (the CLI's entry)."""
    return tune(cfg, began)
