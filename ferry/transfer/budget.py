"""How long to train: ``train.epochs: auto`` turned into a number of epochs, with its reason.

A fixed epoch count is sized for one dataset. Two epochs were right for the built-in 3.9k-row
rotten-tomatoes split (248 optimizer steps) and wrong for a 1k-row set (54 steps: worse than
its own scratch baseline; ten epochs with early stopping gained 11 points). So ``auto`` plans
on optimizer steps instead of epochs:

* a floor of ``train.min_steps_per_class`` steps per class (a head over more classes has more
  to learn), at least two classes' worth;
* epochs = that floor / steps per epoch, rounded up, at least ``MIN_EPOCHS`` (validation can
  then compare epochs) and at most ``train.max_epochs``; when even the cap falls short of the
  floor (a few dozen rows), each epoch makes several passes over the data instead;
* early stopping on validation (``train.patience``) ends it sooner when validation stops
  improving, and the best epoch is kept;
* a time budget (``train.time_budget_s``, ``DEFAULT_TIME_BUDGET_S`` for auto when unset): the
  loop does not start an epoch its measured epoch time says would end past the budget.

On the built-in text data (3,890 training rows, batch 32, 2 classes): 122 steps an epoch, a
floor of 200 steps, so 2 epochs, the old default (any 2-class set of 3,169 rows or more gets 2).
An integer ``train.epochs`` is used as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferry.config import TrainConfig

MIN_EPOCHS = 2
DEFAULT_TIME_BUDGET_S = 3600.0


@dataclass(frozen=True)
class Budget:
    """The planned training length and a sentence saying why (logged, tagged, shown by init)."""

    epochs: int
    reason: str
    passes_per_epoch: int = 1
    steps: int = 0  # optimizer steps planned (before early stopping or the time budget)
    time_budget_s: float | None = None
    auto: bool = False

    def apply(self, train: TrainConfig) -> TrainConfig:
        """The train block with this budget filled in: what the loop and the checkpoints see."""
        return train.model_copy(update={"epochs": self.epochs,
                                        "passes_per_epoch": self.passes_per_epoch,
                                        "time_budget_s": self.time_budget_s})


def plan_epochs(train_cfg: TrainConfig, n_train: int, n_classes: int,
                step_seconds: float | None = None) -> Budget:
    """The budget for ``n_train`` training rows over ``n_classes`` classes.

    ``step_seconds`` (an optimizer step's measured time, when known) also caps the epochs by
    the time budget up front; without it the loop enforces the budget as epochs finish.
    """
    batches = max(1, math.ceil(max(n_train, 1) / train_cfg.batch_size))
    per_epoch = batches * train_cfg.passes_per_epoch
    if train_cfg.epochs != "auto":
        epochs = int(train_cfg.epochs)
        return Budget(epochs, f"train.epochs={epochs} set in the config ({epochs * per_epoch} "
                      f"optimizer steps over {n_train:,} training rows)",
                      train_cfg.passes_per_epoch, epochs * per_epoch, train_cfg.time_budget_s)
    floor = train_cfg.min_steps_per_class * max(2, n_classes)
    epochs = min(train_cfg.max_epochs, max(MIN_EPOCHS, math.ceil(floor / per_epoch)))
    passes = train_cfg.passes_per_epoch
    if epochs * per_epoch < floor:  # tiny data: more passes per epoch, not more epochs
        passes = max(passes, math.ceil(floor / (epochs * batches)))
    seconds = train_cfg.time_budget_s or DEFAULT_TIME_BUDGET_S
    why = (f"train.epochs=auto: {n_train:,} training rows at batch {train_cfg.batch_size} "
           f"give {per_epoch} optimizer steps an epoch; {max(2, n_classes)} classes need at "
           f"least {floor} steps ({train_cfg.min_steps_per_class} per class)")
    if passes != train_cfg.passes_per_epoch:
        why += f", so {passes} passes over the data per epoch"
    cap = time_cap(seconds, step_seconds * batches * passes) if step_seconds else None
    if cap is not None and cap < epochs:
        epochs = cap
        why += f"; {step_seconds:.2f} s a step fits {cap} epochs in {seconds:.0f} s"
    why += (f"; {epochs} epochs ({epochs * batches * passes} steps, between {MIN_EPOCHS} and "
            f"train.max_epochs={train_cfg.max_epochs}), stopping early after "
            f"{train_cfg.patience} epochs without a better validation {train_cfg.select_on} "
            f"or before an epoch would end past {seconds:.0f} s")
    return Budget(epochs, why, passes, epochs * batches * passes, seconds, auto=True)


def time_cap(budget_s: float, epoch_seconds: float) -> int:
    """How many epochs of ``epoch_seconds`` fit in ``budget_s`` (at least one: a model)."""
    return max(1, int(budget_s // max(epoch_seconds, 1e-9)))


def out_of_time(budget_s: float | None, spent_s: float, epochs_done: int) -> bool:
    """Whether another epoch, as long as the mean one so far, would end past the budget."""
    if budget_s is None or epochs_done < 1:
        return False
    return spent_s + spent_s / epochs_done > budget_s
