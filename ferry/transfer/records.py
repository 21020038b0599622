"""What one training leaves behind, with one typed owner each.

``Completion`` is ``complete.json`` in a checkpoint folder: written by the process that
exported the model (rank 0 under torchrun), read when a re-run reuses the training, when the
launching task collects a torchrun job, and when a joining machine looks for unfinished work.
``Trained`` is what the pipeline passes on (a small, serialisable reference to the model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from ferry.files import write_atomic

DONE = "complete.json"
# A training's role in a run: the configured strategy, or the from-scratch control.
Role = Literal["transfer", "scratch"]


class Completion(BaseModel):
    """A finished training: the identity it was trained for and how it went."""

    key: str
    strategy: str
    best_epoch: int
    best_metric: float
    seconds: float = 0.0
    trainable_params: int = 0
    resumed_from: int = 0
    resumed_step: int = 0
    world_size: int = 1
    history: list[dict[str, float]] = []
    train_rows: int = 0  # labelled examples in the training split
    long_text: dict[str, Any] = {}  # long_text.Plan: resolved mode, why, cut figures
    runtime: dict[str, Any] = {}  # loop.FitResult.runtime, plus whether the data was resident

    def write(self, folder: Path) -> Path:
        text = json.dumps(self.model_dump(mode="json"), indent=2)
        return write_atomic(Path(folder) / DONE,
                            lambda tmp: tmp.write_text(text, encoding="utf-8"))

    @classmethod
    def read(cls, folder: Path) -> Completion | None:
        """The folder's record, or None when the training there has not finished."""
        path = Path(folder) / DONE
        if not path.is_file():
            return None
        return cls.model_validate_json(path.read_text(encoding="utf-8"))


class Trained(BaseModel):
    """A trained, exported model folder and how it got there."""

    model_dir: str
    role: Role
    strategy: str
    best_epoch: int
    best_val_accuracy: float
    resumed_from: int
    train_seconds: float
    trainable_params: int = 0
    cached: bool = False
    train_rows: int = 0
    long_text: dict[str, Any] = {}  # how long texts were read (mode, reason, data.* metrics)

    @classmethod
    def of(cls, folder: Path, done: Completion, role: Role, resumed_from: int,
           cached: bool = False) -> Trained:
        """The reference to ``folder/model`` that ``done`` describes."""
        return cls(model_dir=str(Path(folder) / "model"), role=role, strategy=done.strategy,
                   best_epoch=done.best_epoch, best_val_accuracy=done.best_metric,
                   resumed_from=resumed_from, train_seconds=done.seconds,
                   trainable_params=done.trainable_params, cached=cached,
                   train_rows=done.train_rows, long_text=done.long_text)


def metric_prefix(role: Role) -> str:
    """Metric and evaluation-folder prefix of a role: none for the transfer model."""
    return "" if role == "transfer" else f"{role}_"
