"""Training progress as log lines: one per epoch, on the ``ferry.train`` logger.

A terminal also gets a progress bar, but a CI log, a file and a Prefect worker running a
nightly retrain get nothing from a bar: the epoch line is what they show. It goes through
Python logging, so the CLI prints it and, inside a flow, Prefect's run logger forwards it to
the flow run's logs in the UI. Only the process that owns the run reports (rank 0's records
reach the launching task under torchrun).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ferry.transfer.records import Role

log = logging.getLogger("ferry.train")
LABELS = {"transfer": "fine-tune", "scratch": "scratch"}


def epoch_line(role: Role, epoch: int, epochs: int, record: dict) -> str:
    """``fine-tune epoch 1/2  loss 0.4521  val_accuracy 0.8012  ...  412 samples/s``."""
    parts = [f"{LABELS.get(role, role)} epoch {epoch}/{epochs}"]
    if "train_loss" in record:
        parts.append(f"loss {record['train_loss']:.4f}")
    parts += [f"{key} {record[key]:.4f}" for key in ("val_accuracy", "val_macro_f1")
              if key in record]
    if record.get("samples_per_s"):
        parts.append(f"{record['samples_per_s']:,.0f} samples/s")
    if record.get("epoch_seconds"):
        parts.append(f"{record['epoch_seconds']:.1f} s")
    return "  ".join(parts)


def reporter(role: Role, epochs: int,
             then: Callable[[int, dict], None] | None) -> Callable[[int, dict], None]:
    """An epoch callback that logs the epoch line, then passes the record on (to MLflow)."""
    def report(epoch: int, record: dict) -> None:
        log.info(epoch_line(role, epoch, epochs, record))
        if then:
            then(epoch, record)
    return report
