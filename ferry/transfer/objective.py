"""The training objective for any task layout: cross-entropy per single-label task, binary
cross-entropy per multi-label task, class weights for imbalance, fixed or learned task weights.

A row without a label for a task (``tasks.MISSING``; any negative target, like the padding
rows of a compiled batch) adds nothing to that task's loss and still trains the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ferry.models.tasks import MISSING, Layout, labelled, layout_of

LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, torch.Tensor | None]]


def cross_entropy(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The default objective: cross-entropy of the model's logits, no auxiliary term."""
    logits = model(batch)
    return nn.functional.cross_entropy(logits.float(), batch["labels"]), None


def partial_loss(objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
                 ) -> LossFn:
    """The loop's loss for a criterion on (logits, targets); plain cross-entropy without one."""
    if objective is None:
        return cross_entropy

    def loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        return objective(model(batch), batch["labels"]), None

    return loss


def class_weights(layout: Layout, targets: np.ndarray) -> list[torch.Tensor]:
    """Per task, inverse-frequency weights from the training targets: ``n / (k * n_c)``
    (scikit-learn's "balanced": 1 for every class when balanced), so a class seen half as often
    as average counts twice. Multi-label: each label's positives weigh negatives / positives."""
    out = []
    for i, task in enumerate(layout.tasks):
        y = layout.task_targets(targets, i)
        if task.multi:
            seen = y[labelled(y, True)]
            pos = seen.sum(0).astype(float)
            out.append(torch.tensor((len(seen) - pos) / np.maximum(pos, 1), dtype=torch.float32))
            continue
        y = y[y != MISSING]
        counts = np.bincount(y, minlength=len(task.labels)).astype(float)
        weights = len(y) / (len(task.labels) * np.maximum(counts, 1))
        out.append(torch.tensor(weights, dtype=torch.float32))
    return out


@dataclass
class Objective:
    """``loss(logits, targets)`` for a layout. ``weights``: per-task class weights (None: all
    1); ``log_vars``: the head's learned per-task log-variances (uncertainty weighting)."""

    layout: Layout
    weights: list[torch.Tensor] | None = None
    log_vars: nn.Parameter | None = None

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if self.layout.classic:
            return self._single(logits, targets, 0)
        total = logits.new_zeros(())
        for i, task in enumerate(self.layout.tasks):
            part = logits[:, self.layout.logits_of(i)]
            y = targets[:, self.layout.targets_of(i)]
            loss = self._multi(part, y, i) if task.multi else self._single(part, y[:, 0], i)
            if self.log_vars is not None:
                s = self.log_vars[i]
                total = total + torch.exp(-s) * loss + 0.5 * s
            else:
                total = total + task.weight * loss
        return total

    def _weight(self, i: int, device: torch.device) -> torch.Tensor | None:
        return None if self.weights is None else self.weights[i].to(device)

    def _single(self, logits: torch.Tensor, y: torch.Tensor, i: int) -> torch.Tensor:
        """Mean over labelled rows of ``w[y] * CE``: one row's loss scales by its class's
        weight exactly (PyTorch's weighted mean would divide by the weights' sum instead)."""
        each = nn.functional.cross_entropy(logits, y.clamp(min=0), reduction="none")
        if (w := self._weight(i, logits.device)) is not None:
            each = each * w[y.clamp(min=0)]
        mask = (y >= 0).to(each.dtype)
        return (each * mask).sum() / mask.sum().clamp(min=1.0)

    def _multi(self, logits: torch.Tensor, y: torch.Tensor, i: int) -> torch.Tensor:
        mask = (y >= 0).to(logits.dtype)
        each = nn.functional.binary_cross_entropy_with_logits(
            logits, y.clamp(min=0).to(logits.dtype), pos_weight=self._weight(i, logits.device),
            reduction="none")
        return (each * mask).sum() / mask.sum().clamp(min=1.0)


def for_run(cfg, train_targets: np.ndarray, head: nn.Module) -> Objective | None:
    """The run's criterion, or None when it is the plain cross-entropy (one single-label
    task, no class weights): that path stays exactly as it was."""
    layout = layout_of(cfg)
    weights = class_weights(layout, train_targets) if cfg.train.class_weights == "auto" \
        else None
    if layout.classic and weights is None:
        return None
    return Objective(layout, weights, getattr(head, "log_vars", None))
