"""Tasks of the comparison flows (sweep, learning curve): one ferry.experiments call each."""

from prefect import task

from ferry import experiments, steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.models.sources import PretrainedSource


@task(name="scratch_baseline")
def scratch_baseline(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
                     run_id: str) -> steps.Trained:
    """Train or reuse the scratch model every receipt of the sweep compares to."""
    return experiments.scratch_baseline(cfg, source, prepared, run_id)


@task(name="run_strategy", task_run_name="strategy-{name}")
def run_strategy(cfg: FerryConfig, name: str, source: PretrainedSource,
                 prepared: steps.Prepared, parent_id: str,
                 scratch: steps.Trained) -> experiments.StrategyResult:
    """One strategy as a child MLflow run (these run concurrently when memory allows)."""
    return experiments.run_strategy(cfg, name, source, prepared, parent_id, scratch)


@task(name="spread_strategies")
def spread_strategies(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
                      parent_id: str, scratch: steps.Trained) -> list[experiments.StrategyResult]:
    """Every strategy as a flow run of ``sweep.deployment`` at once; waits for all of them.

    Workers pick the runs up as they have room, so a pool of GPU machines trains the
    strategies side by side; each member leaves its result file for the parent.
    """
    from concurrent.futures import ThreadPoolExecutor

    from prefect.deployments import run_deployment

    def launch(name: str) -> tuple[str, str | None]:
        run = run_deployment(cfg.sweep.deployment, timeout=None,
                             parameters=experiments.member_params(cfg, name, source, prepared,
                                                                  parent_id, scratch),
                             flow_run_name=f"sweep-{parent_id[:8]}-{name}")
        done = run.state is not None and run.state.is_completed()
        return name, None if done else (run.state.name if run.state else "no state")

    names = experiments.sweep_strategies(cfg)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        outcomes = list(pool.map(launch, names))
    return experiments.collect_members(cfg, parent_id, outcomes)


@task(name="run_member", task_run_name="member-{name}")
def run_member(cfg: FerryConfig, name: str, source: PretrainedSource,
               prepared: steps.Prepared, parent_id: str,
               scratch: steps.Trained) -> experiments.StrategyResult:
    """One strategy of a spread sweep, on this worker."""
    return experiments.run_member(cfg, name, source, prepared, parent_id, scratch)


@task(name="compare_strategies")
def compare(cfg: FerryConfig, parent_id: str,
            results: list[experiments.StrategyResult]) -> dict:
    """Comparison table and chart on the parent run; picks the winner by validation."""
    return experiments.compare(cfg, parent_id, results)


@task(name="register_best")
def register_best(cfg: FerryConfig, results: list[experiments.StrategyResult], best: str,
                  version: DataVersion, source: PretrainedSource,
                  rows: dict[str, int] | None = None,
                  split_dir: str | None = None) -> steps.Registered:
    """Register the winning strategy's model with the configured alias."""
    return experiments.register_best(cfg, results, best, version, source, rows, split_dir)


@task(name="curve_point", task_run_name="curve-k{k}-seed{seed}-{arm}")
def curve_point(cfg: FerryConfig, source: PretrainedSource, prepared: steps.Prepared,
                k: int | str, seed: int, arm: str) -> dict:
    """Train and score one (k, seed, arm) point of the learning curve."""
    return experiments.curve_point(cfg, source, prepared, k, seed, arm)


@task(name="curve_report")
def curve_report(cfg: FerryConfig, run_id: str, points: list[dict]) -> list[dict]:
    """Table and plot of the learning curve, logged to the curve run."""
    return experiments.curve_report(cfg, run_id, points)
