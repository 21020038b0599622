"""Transfer strategies as policy objects: which parameters train, and at what learning rate.

A strategy never trains anything itself; it freezes parameters and returns optimizer param
groups for the one training loop (the Lightning BackboneFinetuning idea). Backbone learning
rates are ``lr * backbone_lr_factor``, decayed by ``layer_decay`` per block below the top
(layer-wise LR decay; 1.0 = off). A strategy can unfreeze more at the start of an epoch
(gradual unfreezing); its ``state`` goes into every checkpoint and ``restore`` replays it, so a
resumed run has exactly the frozen set and param groups it had when it stopped.

``REGISTRY`` maps each strategy name to its policy class; a policy builds itself from the
strategy config block (``build``), reading the shared knobs and its own block only. The sweep's
default list is the registry's (those that fit the modality).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from torch import nn

from ferry.config import StrategyConfig, TrainConfig
from ferry.errors import ConfigError
from ferry.models.classifier import layer_groups


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


def depth_units(model: nn.Module) -> list[list[nn.Parameter]]:
    """Backbone parameters by depth, top first: last block, ..., first block, embeddings."""
    bottom, blocks = layer_groups(model)
    return [list(b) for b in reversed(blocks)] + [bottom]


@dataclass
class Strategy:
    """Base policy: everything trains, backbone at ``lr * backbone_lr_factor``."""

    backbone_lr_factor: float = 1.0
    layer_decay: float = 1.0
    name: ClassVar[str] = "base"
    cached_features: ClassVar[bool] = False
    trains: ClassVar[bool] = True
    pretrained: ClassVar[bool] = True
    modalities: ClassVar[tuple[str, ...]] = ("text", "image")

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        """The policy for a config block: the knobs the fine-tuning strategies share."""
        return cls(backbone_lr_factor=cfg.backbone_lr_factor, layer_decay=cfg.layer_decay)

    def budget(self, train: TrainConfig) -> TrainConfig:
        """Epochs and learning rate this policy trains with (the train block by default)."""
        return train

    def identity(self) -> dict:
        """Everything about the policy that changes the trained weights (checkpoint identity)."""
        return {"name": self.name, **asdict(self)}

    def frozen_blocks(self, n_blocks: int) -> int:
        """How many encoder blocks (from the bottom) stay frozen; embeddings freeze with any."""
        return 0

    def unit_lr(self, lr: float, depth: int) -> float:
        """LR of the backbone unit ``depth`` steps below the top block."""
        return lr * self.backbone_lr_factor * self.layer_decay ** depth

    def configure(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        """Freeze what the policy says and return the optimizer's param groups."""
        bottom, blocks = layer_groups(model)
        n = self.frozen_blocks(len(blocks))
        if n:
            _freeze(bottom)
            for block in blocks[:n]:
                _freeze(block)
        units = [(params, self.unit_lr(lr, d)) for d, params in enumerate(depth_units(model))]
        return param_groups([*units, (list(model.head.parameters()), lr)], weight_decay)

    def start_epoch(self, epoch: int, model: nn.Module, lr: float,
                    weight_decay: float) -> list[dict]:
        """Param groups to add at the start of ``epoch`` (1-based); none for static policies."""
        return []

    def restore(self, state: dict, model: nn.Module, lr: float,
                weight_decay: float) -> list[dict]:
        """Re-apply a checkpoint's unfreezing; returns the groups it had added, in order."""
        return []

    def state(self, model: nn.Module) -> dict:
        """What a checkpoint must restore: the strategy and each parameter's trainable flag."""
        return {"name": self.name,
                "trainable": [n for n, p in model.named_parameters() if p.requires_grad]}

    def export(self, model: nn.Module) -> dict:
        """Turn the trained model into its saved form; returns extra metadata for the folder."""
        return {}


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

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        return cls(backbone_lr_factor=cfg.backbone_lr_factor, layer_decay=cfg.layer_decay,
                   frozen_layers=cfg.freeze_bottom.frozen_layers)

    def frozen_blocks(self, n_blocks: int) -> int:
        if self.frozen_layers > n_blocks:
            raise ConfigError(f"strategy.freeze_bottom.frozen_layers={self.frozen_layers} but "
                              f"the backbone "
                              f"has only {n_blocks} layers")
        return self.frozen_layers


@dataclass
class GradualUnfreeze(Full):
    """ULMFiT-style: epoch 1 trains the head; each later epoch unfreezes the next block(s) from
    the top (embeddings last), each added as a new param group at its decayed LR."""

    per_epoch: int = 1
    unfrozen: int = 0
    name: ClassVar[str] = "gradual_unfreeze"

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        return cls(backbone_lr_factor=cfg.backbone_lr_factor, layer_decay=cfg.layer_decay,
                   per_epoch=cfg.gradual_unfreeze.per_epoch)

    def configure(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        _freeze(list(model.encoder.parameters()))
        self.unfrozen = 0
        return param_groups([(list(model.head.parameters()), lr)], weight_decay)

    def _unfreeze_to(self, target: int, model: nn.Module, lr: float,
                     weight_decay: float) -> list[dict]:
        units = depth_units(model)
        added: list[dict] = []
        while self.unfrozen < min(target, len(units)):
            params = units[self.unfrozen]
            for p in params:
                p.requires_grad_(True)
            added += param_groups([(params, self.unit_lr(lr, self.unfrozen))], weight_decay)
            self.unfrozen += 1
        return added

    def start_epoch(self, epoch: int, model: nn.Module, lr: float,
                    weight_decay: float) -> list[dict]:
        return self._unfreeze_to((epoch - 1) * self.per_epoch, model, lr, weight_decay)

    def restore(self, state: dict, model: nn.Module, lr: float,
                weight_decay: float) -> list[dict]:
        return self._unfreeze_to(int(state.get("unfrozen", 0)), model, lr, weight_decay)

    def state(self, model: nn.Module) -> dict:
        return {**super().state(model), "unfrozen": self.unfrozen}


@dataclass
class LinearProbe(Strategy):
    """Frozen backbone: features are computed once (and cached); only the head trains."""

    epochs: int = 40
    lr: float = 3e-3
    name: ClassVar[str] = "linear_probe"
    cached_features: ClassVar[bool] = True

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        return cls(epochs=cfg.linear_probe.epochs, lr=cfg.linear_probe.lr)

    def budget(self, train: TrainConfig) -> TrainConfig:
        """A head on cached features costs milliseconds an epoch: it gets its own epochs/LR."""
        return train.model_copy(update={"epochs": self.epochs, "lr": self.lr,
                                        "patience": max(train.patience, 5)})

    def configure(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        _freeze(list(model.encoder.parameters()))
        return param_groups([(list(model.head.parameters()), lr)], weight_decay)


@dataclass
class Lora(Strategy):
    """Low-rank adapters (peft) on the backbone's linear layers; adapters and head train.

    Adapters are new weights, so they learn at the head's LR. ``merge`` folds them into the
    backbone at export (a plain model, no peft needed to serve); otherwise the folder keeps
    the adapter separately (``adapter/``, loadable with peft) and the loader re-applies it.
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    targets: list[str] | str = "all-linear"
    merge: bool = True
    name: ClassVar[str] = "lora"

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        opts = cfg.lora
        return cls(r=opts.r, alpha=opts.alpha, dropout=opts.dropout, targets=opts.targets,
                   merge=opts.merge)

    def lora_config(self):
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.targets)

    def configure(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        from peft import get_peft_model

        self.targets = lora_targets(model.encoder, self.targets)
        model.encoder = get_peft_model(model.encoder, self.lora_config())
        adapters = [p for p in model.encoder.parameters() if p.requires_grad]
        return param_groups([(adapters, lr), (list(model.head.parameters()), lr)], weight_decay)

    def export(self, model: nn.Module) -> dict:
        if self.merge:
            model.encoder = model.encoder.merge_and_unload()
            return {"lora": {"merged": True, "r": self.r}}
        return {"lora": {"merged": False, "config": {
            "r": self.r, "lora_alpha": self.alpha, "lora_dropout": self.dropout,
            "target_modules": self.targets}}}


def lora_targets(encoder: nn.Module, targets: list[str] | str) -> list[str] | str:
    """peft's ``all-linear`` covers transformers models; for any other backbone (timm, a
    conv net) it means every plain Linear and every non-grouped plain Conv2d (peft rebuilds
    the layer type it wraps, so custom subclasses are left alone)."""
    from transformers import PreTrainedModel

    if targets != "all-linear" or isinstance(encoder, PreTrainedModel):
        return targets
    names = [name for name, m in encoder.named_modules()
             if type(m) is nn.Linear or (type(m) is nn.Conv2d and m.groups == 1)]
    if not names:
        raise ConfigError(f"strategy lora: {type(encoder).__name__} has no plain Linear or "
                          "Conv2d layers to adapt; set strategy.lora.targets to module names")
    return names


@dataclass
class ZeroShot(Strategy):
    """No training: the head holds each label description's embedding (a prototype), and a
    text gets the label whose prototype is most cosine-similar to it. Meant for
    sentence-embedding backbones (MiniLM), whose mean-pooled embeddings are trained for it."""

    descriptions: dict[str, list[str]] = field(default_factory=dict)
    scale: float = 20.0
    name: ClassVar[str] = "zero_shot"
    trains: ClassVar[bool] = False
    modalities: ClassVar[tuple[str, ...]] = ("text",)

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        return cls(descriptions=cfg.descriptions(), scale=cfg.zero_shot.scale)

    def configure(self, model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
        _freeze(list(model.parameters()))
        return []


@dataclass
class Scratch(Strategy):
    """The baseline: random init, same architecture and budget, every parameter at the head LR."""

    name: ClassVar[str] = "scratch"
    pretrained: ClassVar[bool] = False

    @classmethod
    def build(cls, cfg: StrategyConfig) -> Strategy:
        return cls()


def trainable_params(model: nn.Module) -> int:
    """Parameters the optimizer updates (what a strategy's cost and capacity scale with)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# Name -> policy class, in the order a sweep runs them (cheap and telling first).
REGISTRY: dict[str, type[Strategy]] = {cls.name: cls for cls in (
    Scratch, ZeroShot, LinearProbe, FreezeBottom, Full, GradualUnfreeze, Lora)}


def from_config(cfg: StrategyConfig) -> Strategy:
    """The policy object for a config block."""
    return REGISTRY[cfg.name].build(cfg)


def applicable(modality: str) -> list[str]:
    """The registered strategies that fit a modality: the sweep's default list."""
    return [name for name, cls in REGISTRY.items() if modality in cls.modalities]
