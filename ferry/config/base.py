"""The strict base of every config block: a typo in a training config must not cost a run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

# Keys added after caches and checkpoints were first keyed on a block's dump, with the value
# that behaves as before: left out of identities while they hold it, so an unchanged config
# keeps its cached splits, trainings and baselines.
ADDED_DEFAULTS: dict[str, Any] = {
    "tasks": None, "label_separator": None, "label_columns": None, "split.stratify": None,
    "class_weights": "none", "select_on": "accuracy", "task_weighting": "fixed"}


class Strict(BaseModel):
    """Base: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def identity_dump(block: BaseModel, **kwargs: Any) -> dict[str, Any]:
    """``block.model_dump(mode="json", **kwargs)`` without the keys of ``ADDED_DEFAULTS``
    that hold their old-behaviour value: what cache keys and checkpoint identities hash."""
    dump = block.model_dump(mode="json", **kwargs)
    for dotted, value in ADDED_DEFAULTS.items():
        *path, last = dotted.split(".")
        inner = dump
        for part in path:
            inner = inner.get(part, {}) if isinstance(inner, dict) else {}
        if isinstance(inner, dict) and last in inner and inner[last] == value:
            del inner[last]
    return dump
