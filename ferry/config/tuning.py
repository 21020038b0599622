"""The ``tune`` block: ``ferry tune``'s Optuna study, its budget, and the search space.

The space is declared as dotted config keys (``train.lr``, ``strategy.lora.r``), so anything a
run can set can be searched, and a trial is exactly a run with a few keys changed. Each knob
is drawn only when the drawn strategy reads it (``when``, or inferred: see
``ferry.tuning.space``), so a LoRA rank is never sampled for a full fine-tune.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, model_validator

from ferry.config.base import Strict
from ferry.config.strategy import StrategyName

Choice = bool | int | float | str

_FINE_TUNING = ["full", "freeze_bottom", "gradual_unfreeze", "lora"]


class ParamSpace(Strict):
    """One searched key: ``choices`` (categorical), or ``low``..``high`` (an integer range
    when both bounds are written as integers (``1``, not ``1.0``) and ``log`` is off, else a
    float range; ``log`` samples
    on a log scale). ``when``: the strategies this key is drawn for (null: inferred)."""

    choices: list[Choice] | None = Field(None, min_length=1)
    low: int | float | None = None  # (an int stays an int: whole bounds draw integers)
    high: int | float | None = None
    log: bool = False
    step: float | None = Field(None, gt=0)
    when: list[StrategyName] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpace:
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("give choices: [...] or both low and high")
        if self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("step does not go with log: true (Optuna draws a log scale "
                             "continuously); drop one of them")
        return self

    @property
    def integer(self) -> bool:
        """Whether the range is drawn as whole numbers (both bounds written as integers)."""
        return (self.choices is None and not self.log and isinstance(self.low, int)
                and isinstance(self.high, int)
                and (self.step is None or float(self.step).is_integer()))


def _default_space() -> dict[str, ParamSpace]:
    """A space that fits the default job on a CPU: the strategy, its learning rate and
    length, and each strategy's own knobs."""
    spec: dict[str, dict[str, Any]] = {
        "strategy.name": {"choices": ["full", "freeze_bottom", "gradual_unfreeze", "lora",
                                      "linear_probe"]},
        "train.lr": {"low": 1e-4, "high": 3e-3, "log": True, "when": _FINE_TUNING},
        "train.epochs": {"low": 1, "high": 3, "when": _FINE_TUNING},
        "train.batch_size": {"choices": [16, 32, 64]},
        "strategy.backbone_lr_factor": {"low": 0.03, "high": 1.0, "log": True},
        "strategy.layer_decay": {"low": 0.6, "high": 1.0},
        "strategy.freeze_bottom.frozen_layers": {"low": 1, "high": 5},
        "strategy.lora.r": {"choices": [4, 8, 16, 32]},
        "strategy.lora.alpha": {"choices": [8, 16, 32, 64]},
        "strategy.linear_probe.lr": {"low": 1e-3, "high": 3e-2, "log": True},
        "strategy.linear_probe.epochs": {"low": 20, "high": 80},
    }
    return {key: ParamSpace(**value) for key, value in spec.items()}


class SamplerConfig(Strict):
    """Optuna's TPE sampler: random draws for the first ``startup_trials``, then TPE."""

    seed: int = 0
    startup_trials: int = Field(4, ge=1)


class TuneConfig(Strict):
    """``ferry tune``: an Optuna study over ``space`` (TPE; a pruner fed each epoch's
    validation ``train.select_on``). The study lives in an RDB storage under ``study``'s
    name: starting ``ferry tune`` again continues it, counting its finished trials toward
    ``trials``.

    ``storage``: null = ``$FERRY_TUNE_STORAGE`` when set (the team stack sets its Postgres),
    else ``sqlite:///`` ``optuna.db`` next to the local MLflow store. ``timeout_s``: the
    wall-clock budget of the whole command; no trial or epoch starts that would end past it
    (such a trial is pruned). ``deployment``: run trials as flow runs of this Prefect
    deployment (prefect.yaml's ``ferry-tune-trial/tune-trial``), ``concurrency`` at once.
    """

    trials: int = Field(20, ge=1)
    timeout_s: float | None = Field(None, gt=0)
    study: str | None = None  # null: <tracking.experiment>-tune
    storage: str | None = None
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    pruner: Literal["median", "halving", "hyperband", "none"] = "median"
    prune_startup_trials: int = Field(2, ge=0)  # median: trials that finish before pruning
    baseline_first: bool = True  # trial 0 is this config's own settings
    heartbeat_s: int = Field(10, ge=1)  # a trial silent 3x this long is failed (and retried)
    deployment: str | None = None
    concurrency: int = Field(2, ge=1)
    space: dict[str, ParamSpace] = Field(default_factory=_default_space, min_length=1)

    def problems(self) -> list[str]:
        """What the block cannot take. The config travels as Prefect flow-run parameters,
        stored and shown as they are: a storage URL must not carry a password."""
        out = []
        if self.storage and re.search(r"://[^/@:]+:[^/@]+@", self.storage):
            out.append("tune.storage must not hold a password (the config is stored with "
                       "every flow run): put it in PGPASSWORD or ~/.pgpass, or give the "
                       "whole URL in the FERRY_TUNE_STORAGE environment variable instead")
        drawn = self.space.get("strategy.name")
        if drawn is not None and drawn.choices is None:
            out.append("tune.space: strategy.name takes choices: [...], not low/high")
        return out


def space_problems(tree: dict[str, Any], space: dict[str, ParamSpace]) -> list[str]:
    """Each searched key that names no setting of the config (``tree``: the config's
    dump), or that would be searched from inside the tune block itself."""
    problems = []
    for key in space:
        node: Any = tree
        for part in key.split("."):
            node = node.get(part, _MISSING) if isinstance(node, dict) else _MISSING
        if key.startswith("tune.") or node is _MISSING or isinstance(node, dict):
            problems.append(f"tune.space: {key!r} is not a setting a run can take (use a "
                            "dotted key such as train.lr or strategy.lora.r)")
    return problems


_MISSING = object()
