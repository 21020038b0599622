"""``FerryConfig``: every block of a run, and the rules that span blocks.

Cross-field rules (zero-shot needs text, adaptation is text-only and single-process, ...) are
checked here, when the config loads, so a run that cannot work fails in its first second with
the keys to change, instead of deep in training after validation and the shift step ran.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

import yaml
from pydantic import Field, model_validator

from ferry.config.base import Strict
from ferry.config.data import DataConfig
from ferry.config.sections import (
    AdaptationConfig,
    CurveConfig,
    DistributedConfig,
    ModelConfig,
    PathsConfig,
    PromotionConfig,
    ReceiptConfig,
    SelfTrainingConfig,
    ShiftConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
)
from ferry.config.serving import MonitorConfig, ServeConfig
from ferry.config.strategy import StrategyConfig, StrategyName
from ferry.config.tuning import TuneConfig, space_problems

# Strategies that need a text backbone (they embed label descriptions).
TEXT_ONLY = {"zero_shot"}
STRATEGY_NAMES: tuple[str, ...] = get_args(StrategyName)


class FerryConfig(Strict):
    """Everything one run needs. Defaults are the built-in job: MiniLM on rotten-tomatoes."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)
    baseline: Literal["none", "scratch"] = "scratch"
    receipt: ReceiptConfig = Field(default_factory=ReceiptConfig)
    shift: ShiftConfig = Field(default_factory=ShiftConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)
    self_training: SelfTrainingConfig = Field(default_factory=SelfTrainingConfig)
    adaptation: AdaptationConfig = Field(default_factory=AdaptationConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    paths: PathsConfig = Field(default_factory=PathsConfig)

    @model_validator(mode="after")
    def _multilabel_metric(self) -> FerryConfig:
        """``train.select_on: auto``: multi-label data goes by macro-F1 (subset accuracy
        punishes one wrong label of many as a total miss), everything else by accuracy."""
        if self.train.select_on == "auto":
            multi = any(t.separator for t in self.data.task_list())
            self.train.select_on = "macro_f1" if multi else "accuracy"
        return self

    @model_validator(mode="after")
    def _consistent(self) -> FerryConfig:
        problems = cross_field_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def to_yaml(self) -> str:
        """The config as YAML, the form logged to MLflow and stored in checkpoints."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)

    def flat(self) -> dict[str, str]:
        """Dotted-key params for MLflow (``train.lr`` -> ``'0.0005'``), credentials in URIs
        masked (params are readable by everyone with access to the experiment)."""
        return {k: redact(str(v)) for k, v in _flatten(self.model_dump(mode="json")).items()}

    def public_yaml(self) -> str:
        """``to_yaml`` with credentials in URIs masked: the form logged to MLflow."""
        return redact(self.to_yaml())

    def with_strategy(self, name: str) -> FerryConfig:
        """The same run with another strategy (data, budget and everything else equal)."""
        return self.model_copy(update={"strategy": self.strategy.model_copy(
            update={"name": name})})


def cross_field_problems(cfg: FerryConfig) -> list[str]:
    """Each rule that spans blocks and is broken, in words that name the keys to change."""
    problems = []
    image = cfg.data.modality == "image"
    if image and cfg.strategy.name in TEXT_ONLY:
        problems.append(f"strategy.name={cfg.strategy.name} needs a text backbone (it embeds "
                        "label descriptions); for images use linear_probe or a fine-tuning "
                        "strategy")
    if image and (bad := TEXT_ONLY & set(cfg.sweep.strategies or [])):
        problems.append(f"sweep.strategies lists {', '.join(sorted(bad))}, which needs text "
                        "data; remove it for data.modality=image")
    if cfg.adaptation.target_path and image:
        problems.append("adaptation.target_path is for text data (an MMD loss on unlabelled "
                        "target texts); unset it for image runs")
    if cfg.adaptation.target_path and cfg.distributed.world > 1:
        problems.append("adaptation.target_path runs in one process; set distributed.nproc "
                        "and distributed.nnodes to 1 (or unset adaptation.target_path)")
    st = cfg.self_training
    if st.enabled and not (st.unlabelled_path or st.label_fraction):
        problems.append("self_training.enabled needs self_training.unlabelled_path (a CSV of "
                        "texts) or self_training.label_fraction (hide part of the labels)")
    if st.enabled and image:
        problems.append("self_training is for text data (it pseudo-labels unlabelled "
                        "texts); set self_training.enabled=false for image runs")
    problems += _task_problems(cfg) + _tune_problems(cfg)
    if cfg.adaptation.target_path and cfg.train.class_weights == "auto":
        problems.append("train.class_weights=auto does not apply to the domain-adaptation "
                        "loss (adaptation.target_path); set train.class_weights=none or unset "
                        "adaptation.target_path")
    if cfg.distributed.node_rank >= cfg.distributed.nnodes:
        problems.append(f"distributed.node_rank {cfg.distributed.node_rank} must be below "
                        f"distributed.nnodes {cfg.distributed.nnodes}")
    return problems


def _task_problems(cfg: FerryConfig) -> list[str]:
    """Several tasks or multi-label heads: what only a single-label head supports."""
    tasks = cfg.data.task_list()
    if len(tasks) == 1 and tasks[0].separator is None:
        return []
    kind = "data.tasks" if len(tasks) > 1 else "multi-label (data.label_separator)"
    problems = []
    if cfg.strategy.name in TEXT_ONLY or TEXT_ONLY & set(cfg.sweep.strategies or []):
        problems.append(f"{kind} cannot be learned zero-shot (one label description list per "
                        "head); choose another strategy or remove zero_shot from "
                        "sweep.strategies")
    if cfg.adaptation.target_path:
        problems.append(f"adaptation.target_path trains a single-label head; unset it for "
                        f"{kind}")
    if cfg.self_training.enabled or cfg.self_training.label_fraction:
        problems.append(f"self_training pseudo-labels one label per text (and "
                        f"label_fraction hides single labels); set self_training.enabled=false "
                        f"and self_training.label_fraction=null for {kind}")
    if cfg.data.modality == "image" and any(t.separator for t in tasks):
        problems.append("multi-label (a label separator) is for text data; an image task "
                        "takes one label per image (several label columns: data.tasks)")
    return problems


def _tune_problems(cfg: FerryConfig) -> list[str]:
    """Searched keys that name no setting, and strategies the data cannot take."""
    problems = cfg.tune.problems() + space_problems(cfg.model_dump(mode="json"),
                                                    cfg.tune.space)
    drawn = cfg.tune.space.get("strategy.name")
    names = [str(c) for c in drawn.choices or []] if drawn else []
    if unknown := [n for n in names if n not in STRATEGY_NAMES]:
        problems.append(f"tune.space: strategy.name choices {unknown} are not strategies "
                        f"(choose from {', '.join(STRATEGY_NAMES)})")
    if cfg.data.modality == "image" and (bad := TEXT_ONLY & set(names)):
        problems.append(f"tune.space: strategy.name lists {', '.join(sorted(bad))}, which "
                        "needs text data; remove it for data.modality=image")
    return problems


def redact(text: str) -> str:
    """``scheme://user:secret@host`` -> ``scheme://user:***@host``."""
    return re.sub(r"(\w+://[^/\s:@]+:)[^@\s/]+@", r"\1***@", text)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{path}."))
        else:
            out[path] = value
    return out
