"""``ferry_model.json``: what an exported model folder needs to be rebuilt and served.

One typed owner for the record: the text and image savers write it, and the loaders, the
modality lookup, registration and serving read it here, all with the same defaults (a folder
written before a field existed reads as it was trained).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from ferry.files import write_atomic

FILE = "ferry_model.json"


class ModelMeta(BaseModel):
    """The model folder's metadata: modality, label names, and how to rebuild the network."""

    model_config = ConfigDict(extra="ignore")

    modality: Literal["text", "image"] = "text"
    labels: list[str]
    dropout: float = 0.1
    normalize: bool = False  # a prototype head compares unit vectors (zero-shot)
    lora: dict[str, Any] | None = None  # an unmerged adapter's peft config, or merge facts
    # Several tasks or multi-label (``ferry.models.tasks.Layout``): each task's name, labels,
    # kind and tuned thresholds; None: one single-label task on ``labels``.
    tasks: list[dict[str, Any]] | None = None
    task_weighting: Literal["fixed", "learned"] = "fixed"  # learned: the head holds log-variances
    # The classic layout's softmax temperature, fitted on validation by evaluation (several
    # tasks: each task's own, in ``tasks``); 1.0, the raw softmax, for an older folder.
    temperature: float = 1.0
    # text
    pooling: Literal["mean", "cls"] = "mean"
    max_length: int = 128
    trust_remote_code: bool = False
    # long texts (``data.long_text`` as resolved for this model): every predict path encodes
    # a text the way training did
    long_text: Literal["truncate", "chunk"] = "truncate"
    chunk_overlap: int | None = None  # None: a quarter of a window
    chunk_max_windows: int = 16
    window_pooling: Literal["mean", "attention"] = "mean"
    # images
    source: str = "packaged"
    name: str = ""
    timm_kwargs: dict[str, Any] = {}
    size: int = 64
    mean: list[float] = []
    std: list[float] = []

    @property
    def unmerged_adapter(self) -> dict[str, Any] | None:
        """The peft LoraConfig kwargs of an adapter kept beside the weights, else None."""
        lora = self.lora or {}
        return lora.get("config") if lora and not lora.get("merged") else None


def read(folder: Path) -> ModelMeta:
    """The metadata of an exported model folder."""
    return ModelMeta.model_validate_json((Path(folder) / FILE).read_text(encoding="utf-8"))


def write(folder: Path, meta: ModelMeta) -> Path:
    """Write the metadata (atomically: a folder is complete only once it has its record)."""
    text = json.dumps(meta.model_dump(mode="json", exclude_defaults=False), indent=2)
    return write_atomic(Path(folder) / FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
