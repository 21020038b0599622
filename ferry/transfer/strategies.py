"""Transfer strategies as policy objects: which parameters train, and at what learning rate.

A strategy never trains anything itself; it freezes parameters and returns optimizer param
groups for the one training loop (the Lightning BackboneFinetuning idea). Its ``state`` goes
into every checkpoint so that a resumed run restores exactly the same frozen set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ferry.config import StrategyConfig, TrainConfig
from ferry.errors import ConfigError
from ferry.models.classifier import TextClassifier, layer_groups


def _freeze(params: list[nn.Parameter]) -> None:
    for p in params:
        p.requires_grad_(False)


def param_groups(modules_lr: list[tuple[list[nn.Parameter], float]],
                 weight_decay: float) -> list[dict]:
    """AdamW groups; biases and norm weights (1-d tensors) get no weight decay."""
    groups = []
    for params, lr in modules_lr:
        live = [p for p in params if p.requires_grad]
        decay = [p for p in live if p.ndim > 1]
        plain = [p for p in live if p.ndim <= 1]
        groups += [{"params": decay, "lr": lr, "weight_decay": weight_decay},
                   {"params": plain, "lr": lr, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


@dataclass
class Strategy:
    """Base policy: everything trains, backbone at ``lr * backbone_lr_factor``."""

    backbone_lr_factor: float = 1.0
    name: ClassVar[str] = "base"
    cached_features: ClassVar[bool] = False

    def budget(self, train: TrainConfig, cfg: StrategyConfig) -> TrainConfig:
        """Epochs and learning rate this policy trains with (the train block by default)."""
        return train

    def frozen_blocks(self, n_blocks: int) -> int:
        """How many encoder blocks (from the bottom) stay frozen; embeddings freeze with any."""
        return 0

    def configure(self, model: TextClassifier, lr: float, weight_decay: float) -> list[dict]:
        """Freeze what the policy says and return the optimizer's param groups."""
        bottom, blocks = layer_groups(model)
        n = self.frozen_blocks(len(blocks))
        if n:
            _freeze(bottom)
            for block in blocks[:n]:
                _freeze(list(block.parameters()))
        backbone = list(model.encoder.parameters())
        return param_groups([(backbone, lr * self.backbone_lr_factor),
                             (list(model.head.parameters()), lr)], weight_decay)

    def state(self, model: TextClassifier) -> dict:
        """What a checkpoint must restore: the strategy and each parameter's trainable flag."""
        return {"name": self.name,
                "trainable": [n for n, p in model.named_parameters() if p.requires_grad]}


@dataclass
class Full(Strategy):
    """Fine-tune everything; the backbone learns slower than the new head (discriminative LR)."""

    backbone_lr_factor: float = 0.1
    name: ClassVar[str] = "full"


@dataclass
class FreezeBottom(Full):
    """Freeze the embeddings and the first N encoder blocks; fine-tune the rest."""

    frozen_layers: int = 2
    name: ClassVar[str] = "freeze_bottom"

    def frozen_blocks(self, n_blocks: int) -> int:
        if self.frozen_layers > n_blocks:
            raise ConfigError(f"strategy.frozen_layers={self.frozen_layers} but the backbone "
                              f"has only {n_blocks} layers")
        return self.frozen_layers


@dataclass
class LinearProbe(Strategy):
    """Frozen backbone: features are computed once (and cached); only the head trains."""

    name: ClassVar[str] = "linear_probe"
    cached_features: ClassVar[bool] = True

    def budget(self, train: TrainConfig, cfg: StrategyConfig) -> TrainConfig:
        """A head on cached features costs milliseconds an epoch: it gets its own epochs/LR."""
        return train.model_copy(update={"epochs": cfg.probe_epochs, "lr": cfg.probe_lr,
                                        "patience": max(train.patience, 5)})

    def configure(self, model: TextClassifier, lr: float, weight_decay: float) -> list[dict]:
        _freeze(list(model.encoder.parameters()))
        return param_groups([(list(model.head.parameters()), lr)], weight_decay)


@dataclass
class Scratch(Strategy):
    """The baseline: random init, same architecture and budget, every parameter at the head LR."""

    name: ClassVar[str] = "scratch"


def from_config(cfg: StrategyConfig) -> Strategy:
    """The policy object for a config block."""
    if cfg.name == "linear_probe":
        return LinearProbe()
    if cfg.name == "freeze_bottom":
        return FreezeBottom(backbone_lr_factor=cfg.backbone_lr_factor,
                            frozen_layers=cfg.frozen_layers)
    return Full(backbone_lr_factor=cfg.backbone_lr_factor)
