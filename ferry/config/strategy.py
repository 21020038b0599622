"""The strategy block: which transfer strategy runs, the knobs the fine-tuning strategies
share, and one block of its own per strategy that has knobs of its own.

A block is read only by its strategy, so one config can drive a sweep over all of them (and a
search can vary one strategy's knobs only when that strategy is drawn). The policy objects
that read these blocks live in ``ferry.transfer.strategies`` (the registry); they point at
their block here, so the two cannot drift apart unnoticed (tests/unit/test_strategy_registry).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ferry.config.base import Strict

StrategyName = Literal["scratch", "zero_shot", "linear_probe", "freeze_bottom", "full",
                       "gradual_unfreeze", "lora"]
# Zero-shot prototypes of the default labels; a label without a description uses its name.
DEFAULT_DESCRIPTIONS: dict[str, list[str]] = {
    "rotten": ["a negative review of a bad, boring, disappointing film",
               "this movie is awful and a waste of time"],
    "fresh": ["a positive review of a good, moving, enjoyable film",
              "this movie is excellent and well worth seeing"]}


class FreezeBottomOptions(Strict):
    """``freeze_bottom``: the embeddings and the first ``frozen_layers`` blocks stay frozen."""

    frozen_layers: int = Field(2, ge=0)


class GradualUnfreezeOptions(Strict):
    """``gradual_unfreeze``: how many more block groups thaw at each epoch start (ULMFiT)."""

    per_epoch: int = Field(1, ge=1)


class LoraOptions(Strict):
    """``lora``: low-rank adapters (peft). ``merge`` folds them into the weights at export."""

    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    targets: list[str] | Literal["all-linear"] = "all-linear"
    merge: bool = True


class LinearProbeOptions(Strict):
    """``linear_probe``: a head on cached frozen features costs milliseconds an epoch, so it
    gets its own epochs and learning rate."""

    epochs: int = Field(40, ge=1)
    lr: float = Field(3e-3, gt=0)


class ZeroShotOptions(Strict):
    """``zero_shot``: cosine similarity to each label's description embedding, times
    ``scale`` (the softmax temperature; also used when a head starts at the prototypes)."""

    scale: float = Field(20.0, gt=0)


class StrategyConfig(Strict):
    """How pretrained knowledge is transferred (see ferry.transfer.strategies).

    ``backbone_lr_factor`` and ``layer_decay`` are shared by the strategies that fine-tune
    the backbone (full, freeze_bottom, gradual_unfreeze): backbone LR = ``train.lr`` x
    factor, x decay per block below the top. ``head_init: prototypes`` starts a text head at
    the zero-shot classifier built from ``label_descriptions``.
    """

    name: StrategyName = "full"
    backbone_lr_factor: float = Field(0.1, gt=0, le=10)
    layer_decay: float = Field(1.0, gt=0, le=1)
    head_init: Literal["prototypes", "random"] = "prototypes"
    label_descriptions: dict[str, str | list[str]] = Field(
        default_factory=lambda: dict(DEFAULT_DESCRIPTIONS))
    freeze_bottom: FreezeBottomOptions = Field(default_factory=FreezeBottomOptions)
    gradual_unfreeze: GradualUnfreezeOptions = Field(default_factory=GradualUnfreezeOptions)
    lora: LoraOptions = Field(default_factory=LoraOptions)
    linear_probe: LinearProbeOptions = Field(default_factory=LinearProbeOptions)
    zero_shot: ZeroShotOptions = Field(default_factory=ZeroShotOptions)

    def descriptions(self) -> dict[str, list[str]]:
        """Label descriptions as lists (the config accepts one string or several per label)."""
        return {k: [v] if isinstance(v, str) else list(v)
                for k, v in self.label_descriptions.items()}


# Keys of the flat strategy block before each strategy had its own (a config that still uses
# one gets told where it went instead of a bare "unknown key").
MOVED = {"frozen_layers": "freeze_bottom.frozen_layers",
         "unfreeze_per_epoch": "gradual_unfreeze.per_epoch",
         "probe_epochs": "linear_probe.epochs", "probe_lr": "linear_probe.lr",
         "lora_r": "lora.r", "lora_alpha": "lora.alpha", "lora_dropout": "lora.dropout",
         "lora_targets": "lora.targets", "lora_merge": "lora.merge",
         "zero_shot_scale": "zero_shot.scale"}
