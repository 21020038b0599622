"""The learning-curve flow: pretrained vs scratch at k labelled examples per class."""

from prefect import flow
from prefect.task_runners import ThreadPoolTaskRunner

from ferry.config import FerryConfig
from ferry.experiments import curve_grid
from flows.common import inputs, mlflow_run
from tasks.experiments import curve_point, curve_report


@flow(name="ferry-curve")
def curve(cfg: FerryConfig) -> dict:
    """Train every point of the curve and log its table and plot."""
    with mlflow_run(cfg, kind="curve") as run_id:
        cfg, _, prepared, source = inputs(cfg, run_id)
        futures = [curve_point.submit(cfg, source, prepared, k, seed, arm)
                   for k, seed, arm in curve_grid(cfg)]
        rows = curve_report(cfg, run_id, [future.result() for future in futures])
    return {"run_id": run_id, "rows": rows}


def run(cfg: FerryConfig, workers: int) -> dict:
    """The curve with ``workers`` trainings at once."""
    return curve.with_options(task_runner=ThreadPoolTaskRunner(max_workers=workers))(cfg)
