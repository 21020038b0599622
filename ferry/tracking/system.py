"""System metrics while a training runs: CPU/GPU utilisation and memory (``system/...``),
what a reviewer checks when a run was slow. GPU figures need an NVIDIA driver
(nvidia-ml-py). MLflow's own monitor does the sampling; this only scopes it to one block."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from ferry.tracking.runs import RunLog


@contextlib.contextmanager
def system_metrics(run: RunLog, interval: float = 2.0) -> Iterator[None]:
    """Sample while the block runs; publish the last partial interval too (a short run would
    otherwise log nothing)."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # start/stop chatter
    monitor = SystemMetricsMonitor(run.run_id, sampling_interval=interval, resume_logging=True,
                                   tracking_uri=run.tracker.uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        with contextlib.suppress(Exception):
            last = monitor.aggregate_metrics()
            if last:
                monitor.publish_metrics(last)
                monitor.mlflow_logger.flush()
