"""The MLflow run every step of a flow logs into: opened, tagged with its origin, closed.

``lifecycle`` is the one place that says what happens to a run when its flow fails (it is
closed as FAILED, then the failure goes on); every flow and the sweep's child runs use it.
"""

from __future__ import annotations

import getpass
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ferry.config import FerryConfig

if TYPE_CHECKING:
    from ferry.tracking import RunLog

log = logging.getLogger("ferry.steps")
# The flow file each kind of run comes from: MLflow's "Source" of the run.
ENTRY_POINTS = {"transfer": "flows/transfer.py", "sweep": "flows/sweep.py",
                "curve": "flows/curve.py", "promotion": "flows/promote.py",
                "tune": "flows/tune.py", "trial": "flows/tune.py"}


def root() -> Path:
    """The project root: paths in the config are relative to the current directory."""
    return Path.cwd()


def start_run(cfg: FerryConfig, kind: str = "transfer", parent_id: str | None = None,
              name: str | None = None) -> str:
    """Open the MLflow run every later step logs into (a child run when ``parent_id`` is set),
    with MLflow's own source tags (entry point, git commit, user) beside Ferry's."""
    from ferry.data.versioning import git_revision
    from ferry.tracking import Tracker

    what = cfg.strategy.name if kind == "transfer" else kind
    if name is None:
        name = cfg.tracking.run_name if cfg.tracking.run_name and not parent_id else (
            f"{what}-{cfg.model.name.split('/')[-1]}-{time.strftime('%Y%m%d-%H%M%S')}")
    tags = {"ferry.kind": kind, "ferry.strategy": cfg.strategy.name,
            "ferry.baseline": cfg.baseline, "ferry.dataset": str(cfg.data.path),
            "mlflow.source.name": ENTRY_POINTS.get(kind, "ferry"), "mlflow.source.type": "LOCAL",
            "mlflow.source.git.commit": git_revision(root())[0], "mlflow.user": _user(),
            "mlflow.note.content": f"Ferry {kind} run: `{cfg.strategy.name}` transfer of "
                                   f"`{cfg.model.path or cfg.model.name}` to `{cfg.data.path}` "
                                   "(config.yaml has every setting; the registered version's "
                                   "description is its model card)."}
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    run_id = Tracker(cfg, root()).start_run(name, tags)
    if not parent_id:
        log.info("MLflow run %s (%s, experiment %r)", run_id, name, cfg.tracking.experiment)
    return run_id


def run_log(cfg: FerryConfig, run_id: str) -> RunLog:
    """The run a step logs into, in the config's store."""
    from ferry.tracking import Tracker

    return Tracker(cfg, root()).run(run_id)


def finish_run(cfg: FerryConfig, run_id: str, ok: bool) -> None:
    run_log(cfg, run_id).end(ok)


def log_metrics(cfg: FerryConfig, run_id: str, metrics: dict[str, float]) -> None:
    run_log(cfg, run_id).metrics(metrics)


@contextmanager
def lifecycle(start: Callable[[], str], finish: Callable[[str, bool], None]) -> Iterator[str]:
    """``start()`` a run, yield its id, ``finish(run_id, ok)`` it: FINISHED when the block
    completes, FAILED (then re-raised) when anything in it fails or is interrupted."""
    run_id = start()
    try:
        yield run_id
    except BaseException:
        finish(run_id, False)
        raise
    finish(run_id, True)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return "unknown"
