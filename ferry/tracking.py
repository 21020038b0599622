"""MLflow: the only module of the library that imports it (runs, params, models, registry).

Default store: SQLite under ``mlruns/`` with artifacts beside it, so a fresh clone needs no
server; ``tracking.uri`` or MLFLOW_TRACKING_URI point a team at its own server instead.
Every call names its run id explicitly (no fluent "active run"), because Prefect may run tasks
in other threads. Registration is all-or-nothing: a version is created only after its model
logged completely, and is deleted again if anything fails before the alias is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mlflow
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema

from ferry.config import FerryConfig
from ferry.errors import FerryError

INPUT_EXAMPLE = ["A gripping, beautifully acted film."]


def tracking_uri(cfg: FerryConfig, root: Path) -> str:
    """Config, then MLFLOW_TRACKING_URI, then the embedded SQLite store under mlruns/."""
    if cfg.tracking.uri:
        return cfg.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = (root / "mlruns").resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


class TrackingUnavailable(FerryError):
    """The tracking server stayed unreachable for longer than tracking.outage_window_s."""


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


def retrying(cfg: FerryConfig, what: str, call: Callable[[], Any]) -> Any:
    """``call()``, retried with backoff (0.5 s doubling to 10 s) while the tracking server is
    unreachable, for at most ``tracking.outage_window_s``; then a clear TrackingUnavailable."""
    import logging

    deadline, delay = time.monotonic() + cfg.tracking.outage_window_s, 0.5
    while True:
        try:
            return call()
        except Exception as exc:
            if not _unreachable(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise TrackingUnavailable(
                    f"MLflow tracking server unreachable for {cfg.tracking.outage_window_s:.0f} s "
                    f"({what}): {str(exc)[:300]}. Nothing was registered or moved; completed "
                    "training is checkpointed, so a re-run resumes once the server is back "
                    "(tracking.outage_window_s sets the wait).") from None
            logging.getLogger("ferry").warning("MLflow unreachable (%s); retrying in %.1f s",
                                               what, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


class _Resilient:
    """An MlflowClient whose every call waits out a tracking-server outage (``retrying``)."""

    def __init__(self, inner: MlflowClient, cfg: FerryConfig) -> None:
        self._inner, self._cfg = inner, cfg

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr
        return lambda *args, **kwargs: retrying(self._cfg, name, lambda: attr(*args, **kwargs))


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
    return _Resilient(MlflowClient(tracking_uri=uri, registry_uri=uri), cfg)  # type: ignore[return-value]


def _experiment_id(mc: MlflowClient, cfg: FerryConfig, root: Path) -> str:
    exp = mc.get_experiment_by_name(cfg.tracking.experiment)
    if exp is not None:
        return exp.experiment_id
    location = None
    if mc.tracking_uri.startswith("sqlite:"):
        location = (root / "mlruns" / "artifacts").resolve().as_uri()
    try:
        return mc.create_experiment(cfg.tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent run
        return mc.get_experiment_by_name(cfg.tracking.experiment).experiment_id


def start_run(cfg: FerryConfig, root: Path, run_name: str, tags: dict[str, str]) -> str:
    """Create the run, log the flattened config as params and the YAML as an artifact."""
    mc = client(cfg, root)
    run = mc.create_run(_experiment_id(mc, cfg, root), run_name=run_name, tags=tags)
    run_id = run.info.run_id
    params = [mlflow.entities.Param(k, v[:6000]) for k, v in cfg.flat().items()]
    for start in range(0, len(params), 100):
        mc.log_batch(run_id, params=params[start:start + 100])
    mc.log_text(run_id, cfg.public_yaml(), "config.yaml")
    return run_id


def set_tags(cfg: FerryConfig, root: Path, run_id: str, tags: dict[str, Any]) -> None:
    mc = client(cfg, root)
    mc.log_batch(run_id, tags=[mlflow.entities.RunTag(k, str(v)) for k, v in tags.items()])


def log_metrics(cfg: FerryConfig, root: Path, run_id: str, metrics: dict[str, float],
                step: int = 0) -> None:
    mc = client(cfg, root)
    now = int(time.time() * 1000)
    batch = [mlflow.entities.Metric(k, float(v), now, step) for k, v in metrics.items()]
    for start in range(0, len(batch), 500):
        mc.log_batch(run_id, metrics=batch[start:start + 500])


def epoch_logger(cfg: FerryConfig, root: Path, run_id: str,
                 prefix: str = "") -> Callable[[int, dict], None]:
    """Callback for the training loop: per-epoch metrics with the epoch as step."""
    def log(epoch: int, record: dict) -> None:
        log_metrics(cfg, root, run_id, {f"{prefix}{k}": v for k, v in record.items()
                                        if k != "epoch"}, step=epoch)
    return log


def log_artifacts(cfg: FerryConfig, root: Path, run_id: str, paths: list[Path],
                  folder: str) -> None:
    mc = client(cfg, root)
    for path in paths:
        if path.is_dir():
            mc.log_artifacts(run_id, str(path), folder)
        elif path.is_file():
            mc.log_artifact(run_id, str(path), folder)


def end_run(cfg: FerryConfig, root: Path, run_id: str, ok: bool) -> None:
    client(cfg, root).set_terminated(run_id, "FINISHED" if ok else "FAILED")


class TextClassifierModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: raw texts in, label names out."""

    def load_context(self, context: Any) -> None:
        from ferry.models.classifier import load

        self.model, self.tokenizer, self.meta = load(Path(context.artifacts["model"]))

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None):
        """Texts (a list, a Series or a one-column DataFrame) -> label names."""
        import torch

        from ferry.transfer.batching import encode, text_batches
        from ferry.transfer.inference import run

        texts = _texts(model_input)
        enc = encode(self.tokenizer, texts, [0] * len(texts), self.meta["max_length"])
        logits = run(self.model, text_batches(enc, 64, None), len(enc), torch.device("cpu"))
        return [self.meta["labels"][i] for i in logits.argmax(1).tolist()]


class ImageClassifierModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: image files or arrays in, label names out.

    Accepts a list (or one-column DataFrame / Series) of file paths or encoded image bytes,
    one HxW / HxWxC uint8 array, a list of them, or an N x H x W (x C) array. Each image gets
    the model's own resizing and normalisation, exactly as in evaluation.
    """

    def load_context(self, context: Any) -> None:
        from ferry.models.vision import load

        self.model, _, self.meta = load(Path(context.artifacts["model"]))

    def predict(self, context, model_input, params=None):  # untyped: paths or arrays
        import torch

        from ferry.transfer.batching import Pixels, image_batches
        from ferry.transfer.inference import run

        pixels = torch.from_numpy(_image_arrays(model_input, self.meta["size"]))
        data = Pixels(pixels, torch.zeros(len(pixels), dtype=torch.int64))
        logits = run(self.model, image_batches(data, 64, None), len(data), torch.device("cpu"))
        return [self.meta["labels"][i] for i in logits.argmax(1).tolist()]


def _image_arrays(model_input: Any, size: int):
    """Model input as N x 3 x size x size uint8, with a clear error for anything else."""
    import io

    import numpy as np
    import pandas as pd
    from PIL import Image

    from ferry.data.images import open_rgb, to_array

    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0]
    if isinstance(model_input, np.ndarray) and model_input.dtype != object:
        model_input = [model_input] if model_input.ndim in (2, 3) and (
            model_input.ndim == 2 or model_input.shape[-1] in (1, 3, 4)) else list(model_input)
    out = []
    for i, item in enumerate(list(model_input)):
        if isinstance(item, (str, Path)):
            image = open_rgb(item)
        elif isinstance(item, bytes):
            image = open_rgb(io.BytesIO(item))
        elif isinstance(item, np.ndarray) and item.ndim in (2, 3):
            image = Image.fromarray(np.asarray(item, dtype=np.uint8).squeeze()).convert("RGB")
        else:
            raise ValueError(f"input {i}: expected an image file path, encoded image bytes or "
                             f"an HxW / HxWxC uint8 array, got {type(item).__name__}")
        out.append(to_array(image, size))
    if not out:
        raise ValueError("no images given")
    return np.stack(out)


def _texts(model_input: Any) -> list[str]:
    """pyfunc hands over what the signature says (a one-column frame); accept lists too."""
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        model_input = model_input.iloc[:, 0]
    return [str(t) for t in list(model_input)]


# Declared, not inferred: inference would load the model and run it once more at log time.
SIGNATURE = ModelSignature(inputs=Schema([ColSpec(DataType.string)]),
                           outputs=Schema([ColSpec(DataType.string)]))


def register(cfg: FerryConfig, root: Path, run_id: str, model_dir: Path,
             tags: dict[str, str], description: str) -> tuple[str, str]:
    """Log the pyfunc model to the run, register it and point the alias at the new version."""
    import ferry

    mc = client(cfg, root)
    image = json.loads((model_dir / "ferry_model.json").read_text(encoding="utf-8")).get(
        "modality") == "image"
    # text: declared string-in/string-out signature; images: paths or arrays, checked by the
    # wrapper itself (one column signature cannot say "path or array")
    kwargs = {"python_model": ImageClassifierModel()} if image else {
        "python_model": TextClassifierModel(), "input_example": INPUT_EXAMPLE,
        "signature": SIGNATURE}
    def log_model():  # all artifacts, or (retried) a fresh logged model; never registered half
        with mlflow.start_run(run_id=run_id):
            return mlflow.pyfunc.log_model(
                name="model", artifacts={"model": str(model_dir)},
                code_paths=[str(Path(ferry.__file__).parent)],
                pip_requirements=_requirements(image), **kwargs)

    info = retrying(cfg, "log the model", log_model)
    name = cfg.tracking.model_name
    try:
        mc.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        with contextlib.suppress(mlflow.exceptions.MlflowException):  # a concurrent run won
            mc.create_registered_model(name, description="Ferry transfer-learning model")
    version = mc.create_model_version(name, info.model_uri, run_id=run_id, tags=tags,
                                      description=description, model_id=info.model_id)
    try:
        _wait_ready(mc, name, version.version)
        mc.set_registered_model_alias(name, cfg.tracking.alias, version.version)
    except BaseException:
        mc.delete_model_version(name, version.version)
        raise
    return name, str(version.version)


def _wait_ready(mc: MlflowClient, name: str, version: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while mc.get_model_version(name, version).status != "READY":
        if time.monotonic() > deadline:
            raise TimeoutError(f"model version {name}/{version} not READY after {timeout}s")
        time.sleep(0.2)


def _requirements(image: bool = False) -> list[str]:
    from importlib.metadata import version

    extra = ("timm", "torchvision", "pillow", "efficientnet-lite-pytorch") if image else ()
    return [f"{pkg}=={version(pkg)}" for pkg in
            ("torch", "transformers", "safetensors", "tokenizers", "peft", "mlflow", "pydantic",
             "pyyaml", "pandas", "scikit-learn", "tqdm", *extra)]


def load_model(cfg: FerryConfig, root: Path, uri: str) -> Any:
    """Load a registered model, e.g. ``models:/name@challenger`` (used by tests and CLI)."""
    client(cfg, root)
    return mlflow.pyfunc.load_model(uri)


def registry_state(cfg: FerryConfig, root: Path) -> dict[str, Any]:
    """Versions and aliases of the configured model (what bad-input tests compare)."""
    mc = client(cfg, root)
    try:
        model = mc.get_registered_model(cfg.tracking.model_name)
    except mlflow.exceptions.MlflowException:
        return {"versions": [], "aliases": {}}
    versions = sorted(v.version for v in mc.search_model_versions(f"name='{model.name}'"))
    return {"versions": versions, "aliases": dict(model.aliases)}


def alias_version(cfg: FerryConfig, root: Path, name: str, alias: str) -> str | None:
    """The version an alias points at, or None (no such model or alias)."""
    mc = client(cfg, root)
    try:
        return str(mc.get_model_version_by_alias(name, alias).version)
    except mlflow.exceptions.MlflowException:
        return None


def model_folder(cfg: FerryConfig, root: Path, name: str, version: str, dst: Path) -> Path:
    """Download a registered version and return its Ferry model folder (what was trained)."""
    client(cfg, root)
    import yaml

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}",
                                                     dst_path=str(dst)))
    spec = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
    return local / spec["flavors"]["python_function"]["artifacts"]["model"]["path"]


def version_tags(cfg: FerryConfig, root: Path, name: str, version: str) -> dict[str, str]:
    return dict(client(cfg, root).get_model_version(name, version).tags)


def set_version_tags(cfg: FerryConfig, root: Path, name: str, version: str,
                     tags: dict[str, Any]) -> None:
    mc = client(cfg, root)
    for key, value in tags.items():
        mc.set_model_version_tag(name, version, key, str(value))


def set_alias(cfg: FerryConfig, root: Path, name: str, alias: str, version: str) -> None:
    """Point ``alias`` at ``version``: one registry write, the only one that changes what
    ``models:/name@alias`` serves."""
    client(cfg, root).set_registered_model_alias(name, alias, version)


def tagged_versions(cfg: FerryConfig, root: Path, name: str, key: str) -> dict[str, str]:
    """``{version: tag value}`` of the versions carrying tag ``key``."""
    mc = client(cfg, root)
    return {str(v.version): v.tags[key] for v in mc.search_model_versions(f"name='{name}'")
            if key in v.tags}


def record_decision(cfg: FerryConfig, root: Path, name: str, kind: str, metrics: dict,
                    tags: dict[str, Any]) -> str:
    """A finished run holding a promotion or rollback decision (scores as metrics, the
    decision and reason as tags), in the task's experiment beside its training runs."""
    mc = client(cfg, root)
    run = mc.create_run(_experiment_id(mc, cfg, root),
                        run_name=f"{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}",
                        tags={"ferry.kind": kind, **{k: str(v) for k, v in tags.items()}})
    now = int(time.time() * 1000)
    mc.log_batch(run.info.run_id, metrics=[mlflow.entities.Metric(k, float(v), now, 0)
                                           for k, v in metrics.items()])
    mc.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@contextlib.contextmanager
def system_metrics(cfg: FerryConfig, root: Path, run_id: str, interval: float = 2.0):
    """CPU/GPU utilisation and memory (``system/...`` metrics) while the block runs: what a
    reviewer checks when a run was slow. GPU figures need an NVIDIA driver (nvidia-ml-py)."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval, resume_logging=True,
                                   tracking_uri=tracking_uri(cfg, root))
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()
        with contextlib.suppress(Exception):  # the monitor drops its last, partial interval:
            last = monitor.aggregate_metrics()  # publish it, or a short run logs nothing
            if last:
                monitor.publish_metrics(last)
                monitor.mlflow_logger.flush()
