"""The sweep flow: every chosen strategy on one data version, child runs under one parent."""

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ferry import experiments, steps
from ferry.config import FerryConfig
from ferry.models.sources import PretrainedSource
from flows.common import inputs, log_to_prefect, mlflow_run
from tasks.experiments import (
    compare,
    register_best,
    run_member,
    run_strategy,
    scratch_baseline,
    spread_strategies,
)


@flow(name="ferry-sweep")
def sweep(cfg: FerryConfig) -> dict:
    """Compare transfer strategies; register the best by the validation
    metric of ``train.select_on``."""
    with mlflow_run(cfg, kind="sweep") as parent:
        cfg, version, prepared, source = inputs(cfg, parent)
        scratch = scratch_baseline(cfg, source, prepared, parent)
        if cfg.sweep.deployment:  # one flow run per strategy, on the pool's workers
            results = spread_strategies(cfg, source, prepared, parent, scratch)
        else:
            futures = [run_strategy.submit(cfg, name, source, prepared, parent, scratch)
                       for name in experiments.sweep_strategies(cfg)]
            results = [future.result() for future in futures]
        summary = compare(cfg, parent, results)
        registered = register_best(cfg, results, summary["best"], version, source,
                                   prepared.rows, prepared.split_dir)
    return {"run_id": parent, **summary, "model": registered.model_dump()}


def run(cfg: FerryConfig, workers: int) -> dict:
    """The sweep with ``workers`` strategy runs training at once."""
    return sweep.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(cfg)


@flow(name="ferry-scheduled-sweep")
def scheduled_sweep(config: str | None = "configs/default.yaml",
                    overrides: list[str] | None = None) -> dict:
    """The sweep for deployments: a config path and overrides in, one worker per strategy
    at a time as ``sweep.concurrency`` says."""
    from ferry.config import load_config

    cfg = load_config(config, overrides or [])
    workers = experiments.workers(cfg, steps.retrieve_pretrained(cfg))
    return sweep.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(cfg)


@flow(name="ferry-sweep-member")
def sweep_member(cfg: FerryConfig, name: str, source: PretrainedSource,
                 prepared: steps.Prepared, parent_id: str, scratch: steps.Trained) -> dict:
    """One strategy of a spread sweep (``sweep.deployment``), run by any worker of the pool."""
    log_to_prefect()
    return run_member(cfg, name, source, prepared, parent_id, scratch).model_dump(mode="json")
