"""The model registry: versions, their tags and the aliases that say which one serves.

Registration is all-or-nothing: a version is created only after its model logged completely,
and is deleted again if anything fails before the alias is set. Only ``set_alias`` changes
what ``models:/name@alias`` serves.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ferry.config import FerryConfig
from ferry.tracking.client import retrying
from ferry.tracking.pyfunc import log_kwargs

MODEL_CODE = Path(__file__).with_name("model_code.py")


class Registry:
    """One registered model (``name``) in a store (``Tracker.model`` builds it)."""

    def __init__(self, mc: MlflowClient, cfg: FerryConfig, name: str) -> None:
        self.mc, self.cfg, self.name = mc, cfg, name

    def register(self, run_id: str, model_dir: Path, tags: dict[str, str],
                 description: str, model_description: str) -> str:
        """Log the pyfunc model (from code) to the run, register it as a new version with
        ``description`` (its card), describe the registered model itself with
        ``model_description``, and point the configured alias at the new version."""
        import ferry
        from ferry.models.meta import read as read_meta

        meta = read_meta(model_dir)
        image = meta.modality == "image"

        def log_model():  # all artifacts, or (retried) a fresh logged model; never registered half
            with mlflow.start_run(run_id=run_id):
                return mlflow.pyfunc.log_model(
                    name="model", python_model=str(MODEL_CODE),
                    artifacts={"model": str(model_dir)},
                    code_paths=[str(Path(ferry.__file__).parent)],
                    pip_requirements=requirements(image), **log_kwargs(image, meta))

        info = retrying(self.cfg.tracking.outage_window_s, "log the model", log_model)
        self._ensure_model(model_description)
        version = self.mc.create_model_version(self.name, info.model_uri, run_id=run_id,
                                               tags=tags, description=description,
                                               model_id=info.model_id)
        try:
            self._wait_ready(version.version)
            self.set_alias(self.cfg.tracking.alias, str(version.version))
        except BaseException:
            self.mc.delete_model_version(self.name, version.version)
            raise
        return str(version.version)

    def _ensure_model(self, description: str) -> None:
        try:
            self.mc.get_registered_model(self.name)
        except mlflow.exceptions.MlflowException:
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # a concurrent run won
                self.mc.create_registered_model(self.name, description=description)
        self.mc.update_registered_model(self.name, description=description)

    def _wait_ready(self, version: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.mc.get_model_version(self.name, version).status != "READY":
            if time.monotonic() > deadline:
                raise TimeoutError(f"model version {self.name}/{version} not READY after "
                                   f"{timeout}s")
            time.sleep(0.2)

    def state(self) -> dict[str, Any]:
        """Versions and aliases (what bad-input tests compare before and after)."""
        try:
            model = self.mc.get_registered_model(self.name)
        except mlflow.exceptions.MlflowException:
            return {"versions": [], "aliases": {}}
        versions = sorted(v.version for v in self.mc.search_model_versions(f"name='{self.name}'"))
        return {"versions": versions, "aliases": dict(model.aliases)}

    def alias_version(self, alias: str) -> str | None:
        """The version an alias points at, or None (no such model or alias)."""
        try:
            return str(self.mc.get_model_version_by_alias(self.name, alias).version)
        except mlflow.exceptions.MlflowException:
            return None

    def model_folder(self, version: str, dst: Path) -> Path:
        """Download a version and return its Ferry model folder (what was trained)."""
        import yaml

        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{self.name}/{version}", dst_path=str(dst)))
        spec = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        return local / spec["flavors"]["python_function"]["artifacts"]["model"]["path"]

    def version_tags(self, version: str) -> dict[str, str]:
        return dict(self.mc.get_model_version(self.name, version).tags)

    def set_version_tags(self, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.mc.set_model_version_tag(self.name, version, key, str(value))

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``: one registry write, the only one that changes what
        ``models:/name@alias`` serves. MLflow's SQL store inserts an alias's first row without
        a lock, so two processes creating the same alias at once collide on its unique key:
        the loser writes again (now an update), and the last write wins as it always does."""
        try:
            self.mc.set_registered_model_alias(self.name, alias, version)
        except mlflow.exceptions.MlflowException as exc:
            if "UNIQUE constraint" not in str(exc) and "duplicate key" not in str(exc):
                raise
            self.mc.set_registered_model_alias(self.name, alias, version)

    def tagged_versions(self, key: str) -> dict[str, str]:
        """``{version: tag value}`` of the versions carrying tag ``key``."""
        return {str(v.version): v.tags[key]
                for v in self.mc.search_model_versions(f"name='{self.name}'") if key in v.tags}

    def version_of(self, ref: str) -> tuple[str, str]:
        """``(version, run id)`` of a version number or an alias; a clear error naming the
        model when there is no such version or alias."""
        from ferry.errors import FerryError

        try:
            mv = self.mc.get_model_version(self.name, ref) if ref.isdigit() else \
                self.mc.get_model_version_by_alias(self.name, ref)
        except mlflow.exceptions.MlflowException as exc:
            if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise  # refused credentials, a server error: not "no such alias"
            what = f"version {ref}" if ref.isdigit() else f"alias @{ref}"
            raise FerryError(f"registered model {self.name!r} has no {what} in "
                             f"{mlflow.get_tracking_uri()}; see `mlflow ui` or register one "
                             "with `ferry run` (then `ferry promote` for @champion)") from None
        return str(mv.version), str(mv.run_id)

    def pyfunc(self, version: str) -> Any:
        """The pyfunc model of one version (a fixed version: an alias can move meanwhile)."""
        return mlflow.pyfunc.load_model(f"models:/{self.name}/{version}")

    def load(self, alias_or_version: str) -> Any:
        """The pyfunc model of ``name@alias`` or ``name/version`` (tests, the CLI)."""
        sep = "/" if alias_or_version.isdigit() else "@"
        return mlflow.pyfunc.load_model(f"models:/{self.name}{sep}{alias_or_version}")


def parse_ref(ref: str, default_name: str, default_alias: str) -> tuple[str, str]:
    """``NAME@ALIAS``, ``NAME/VERSION``, ``@ALIAS`` or ``VERSION`` -> (name, alias or version
    number), the missing part from the config."""
    if "@" in ref:
        name, _, alias = ref.rpartition("@")
        return name or default_name, alias or default_alias
    if "/" in ref:
        name, _, version = ref.rpartition("/")
        return name or default_name, version
    return (default_name, ref) if ref.isdigit() else (ref, default_alias)


def requirements(image: bool = False) -> list[str]:
    """The pinned packages a served model needs (declared: inferring them costs 7-15 s)."""
    from importlib.metadata import version

    extra = ("timm", "torchvision", "pillow", "efficientnet-lite-pytorch") if image else ()
    return [f"{pkg}=={version(pkg)}" for pkg in
            ("torch", "transformers", "safetensors", "tokenizers", "peft", "mlflow", "pydantic",
             "pyyaml", "pandas", "scikit-learn", "tqdm", *extra)]
