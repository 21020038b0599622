"""The MLflow client Ferry talks through: which store, and waiting out a server outage.

Default store: SQLite under ``mlruns/`` with artifacts beside it, so a fresh clone needs no
server; ``tracking.uri`` or MLFLOW_TRACKING_URI point a team at its own server instead. Every
call through ``client`` is retried with backoff while the server is unreachable, for at most
``tracking.outage_window_s``, then fails with one clear error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ferry.config import FerryConfig
from ferry.errors import FerryError

# What the MLflow UI reads to pick the experiment's view (without it MLflow 3 opens on the
# GenAI overview: traces and token usage, all empty for a fine-tuning project).
EXPERIMENT_KIND = {"mlflow.experimentKind": "finetuning"}


class TrackingUnavailable(FerryError):
    """The tracking server stayed unreachable for longer than tracking.outage_window_s."""


def tracking_uri(cfg: FerryConfig, root: Path) -> str:
    """Config, then MLFLOW_TRACKING_URI, then the embedded SQLite store under mlruns/."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = (root / "mlruns").resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def _unreachable(exc: BaseException) -> bool:
    """A connection that never reached the server (refused, reset, DNS, 502-504): safe to
    send again. Anything the server answered (a 4xx, a bad request) is not retried."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    text = str(exc)
    return isinstance(exc, mlflow.exceptions.MlflowException) and any(
        needle in text for needle in ("Max retries exceeded", "Connection refused",
                                      "Connection aborted", "Failed to establish",
                                      "RemoteDisconnected", "too many 50"))


def retrying(window_s: float, what: str, call: Callable[[], Any]) -> Any:
    """``call()``, retried with backoff (0.5 s doubling to 10 s) while the tracking server is
    unreachable, for at most ``window_s``; then a clear TrackingUnavailable."""
    deadline, delay = time.monotonic() + window_s, 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not _unreachable(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise TrackingUnavailable(
                    f"MLflow tracking server unreachable for {window_s:.0f} s "
                    f"({what}): {str(exc)[:300]}. Nothing was registered or moved; completed "
                    "training is checkpointed, so a re-run resumes once the server is back "
                    "(tracking.outage_window_s sets the wait).") from None
            logging.getLogger("ferry").warning("MLflow unreachable (%s); retrying in %.1f s",
                                               what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class Resilient:
    """An MlflowClient whose every call waits out a tracking-server outage (``retrying``)."""

    def __init__(self, inner: MlflowClient, window_s: float) -> None:
        self._inner, self._window = inner, window_s

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: retrying(self._window, name,
                                                lambda: attr(*args, **kwargs))


def client(cfg: FerryConfig, root: Path) -> MlflowClient:
    """A client bound to the configured store (also sets the process-wide URIs for pyfunc);
    its calls wait out a server outage of up to ``tracking.outage_window_s``."""
    uri = tracking_uri(cfg, root)
    # MLflow's own HTTP retries would wait ~2 min per call, silently; Ferry's window rules.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in before.items():  # MLflow also exports them to the environment, where
        if value is None:  # they would outrank the next config's own store (tracking_uri
            os.environ.pop(key, None)  # reads the environment as the user's choice)
        else:
            os.environ[key] = value
    inner = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return Resilient(inner, cfg.tracking.outage_window_s)  # type: ignore[return-value]


def experiment_id(mc: MlflowClient, cfg: FerryConfig, root: Path) -> str:
    """The configured experiment, created on first use with its artifacts beside the SQLite
    store and tagged with the kind the MLflow UI opens it as."""
    exp = mc.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        if exp.tags.get("mlflow.experimentKind") is None:  # a store made before the tag
            for key, value in EXPERIMENT_KIND.items():
                mc.set_experiment_tag(exp.experiment_id, key, value)
        return exp.experiment_id
    location = None
    if mc.tracking_uri.startswith("sqlite:"):
        location = (root / "mlruns" / "artifacts").resolve().as_uri()
    try:
        return mc.create_experiment(cfg.tracking.experiment, artifact_location=location,
                                    tags=EXPERIMENT_KIND)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
        return mc.get_experiment_by_name(cfg.tracking.experiment).experiment_id
