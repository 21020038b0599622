"""The learning-curve flow: pretrained vs scratch at k labelled examples per class."""

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.config import FerryConfig
from ferry.experiments import curve_grid
from flows.common import inputs
from tasks.experiments import curve_point, curve_report
from tasks.tracking import finish_run, start_run


@flow(name="ferry-curve")
def curve(cfg: FerryConfig) -> dict:
    """Train every point of the curve and log its table and plot."""
    run_id = start_run(cfg, kind="curve")
    try:
        _, prepared, source = inputs(cfg, run_id)
        futures = [curve_point.submit(cfg, source, prepared, k, seed, arm)
                   for k, seed, arm in curve_grid(cfg)]
        rows = curve_report(cfg, run_id, [future.result() for future in futures])
    except BaseException:
        finish_run(cfg, run_id, ok=False)
        raise
    finish_run(cfg, run_id, ok=True)
    return {"run_id": run_id, "rows": rows}


def run(cfg: FerryConfig, workers: int) -> dict:
    """The curve with ``workers`` trainings at once."""
    return curve.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(cfg)
