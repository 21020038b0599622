"""Tasks of the tune flow: one ferry.tuning call each (the spread launcher also drives the
Prefect API, which the library never imports)."""

from prefect import task

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource
from ferry.tuning import report, search
from ferry.tuning.trial import Context


@task(name="tune_parent_run")
def parent_run(cfg: FerryConfig) -> str:
    """The study's MLflow parent run: reopened when the study has one, else started."""
    return search.parent_run(cfg)


@task(name="search_context")
def search_context(cfg: FerryConfig, parent_id: str, source: PretrainedSource,
                   prepared: steps.Prepared, scratch: steps.Trained | None,
                   began: float) -> Context:
    """What every trial shares: the parent run, inputs, scratch model and the deadline."""
    return search.context(cfg, parent_id, source, prepared, scratch, began)


@task(name="prepare_search")
def prepare_search(cfg: FerryConfig, ctx: Context) -> int:
    """Queue the config's own settings as trial 0, warm the probe's features; trials to go."""
    return search.prepare(cfg, ctx)


@task(name="run_trials")
def run_trials(cfg: FerryConfig, ctx: Context, n_trials: int) -> None:
    """The trials here, one after another, each a child run of the tune run."""
    search.optimize(cfg, ctx, n_trials)


@task(name="run_trial")
def run_trial(cfg: FerryConfig, ctx: Context) -> str:
    """One trial of a spread search, on this worker."""
    return search.member(cfg, ctx)


@task(name="spread_trials")
def spread_trials(cfg: FerryConfig, ctx: Context) -> list[str]:
    """Trials as flow runs of ``tune.deployment``, ``tune.concurrency`` at a time, until the
    study has its trials or the deadline passes; the workers share the study's storage."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from prefect.deployments import run_deployment

    from ferry.steps import root
    from ferry.tuning.study import open_study

    params = {"cfg": cfg.model_dump(mode="json"), "ctx": ctx.model_dump(mode="json")}

    def launch(slot: int) -> list[str]:
        states, launched = [], 0
        while search.wanted(cfg, open_study(cfg, root()), ctx.deadline,
                            ctx.prepared.split_key) and \
                launched <= 2 * cfg.tune.trials:  # a pool that fails every run stops
            left = None if ctx.deadline is None else max(1.0, ctx.deadline - time.time())
            run = run_deployment(cfg.tune.deployment, timeout=left, parameters=params,
                                 flow_run_name=f"tune-{ctx.parent_id[:8]}-{slot}-{launched}")
            states.append(run.state.name if run.state else "no state")
            launched += 1
        return states

    with ThreadPoolExecutor(max_workers=cfg.tune.concurrency) as pool:
        return [s for states in pool.map(launch, range(cfg.tune.concurrency)) for s in states]


@task(name="tune_report")
def tune_report(cfg: FerryConfig, parent_id: str, split_key: str) -> dict:
    """Trial table (CSV), Optuna's plots and the counts on the parent run."""
    return report.summarise(cfg, parent_id, split_key)


@task(name="register_best_trial")
def register_best(cfg: FerryConfig, ctx: Context, version: DataVersion) -> dict:
    """Register the best complete trial's model with the configured alias."""
    return search.register_best(cfg, ctx, version)
