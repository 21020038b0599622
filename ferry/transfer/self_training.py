"""Self-training: a model labels unlabelled texts it is confident about and learns from them.

Round 0 trains on the labelled set only (the supervised reference); every round gets at least
``self_training.min_steps`` optimizer steps. Each later round labels
the whole unlabelled pool with the previous round's model, keeps the predictions whose
probability reaches ``threshold``, and trains a fresh copy of the pretrained model on labelled
+ pseudo-labelled texts. Every round is scored on validation and test and logged; the model
kept is the round with the best validation accuracy (the test split only reports).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ferry.config import FerryConfig
from ferry.data import subsets
from ferry.models.sources import PretrainedSource
from ferry.transfer import inference, scoring, training
from ferry.transfer.records import Trained
from ferry.transfer.runtime import resolve_device


def pool_frame(cfg: FerryConfig, path: Path) -> pd.DataFrame:
    """The unlabelled texts (a ``hidden_label`` column, if present, is only for reporting)."""
    from ferry.data.loading import read_table

    return read_table(path, [cfg.data.text_column])


def pseudo_label(cfg: FerryConfig, model_dir: Path, pool: pd.DataFrame) -> tuple[pd.DataFrame,
                                                                                  dict]:
    """Confident predictions on the pool as training rows, and how good they were."""
    probs = inference.predict_folder(model_dir, pool[cfg.data.text_column].tolist(),
                                     cfg.train.eval_batch_size, resolve_device(cfg.train.device))
    conf, pred = probs.max(1)
    keep = (conf >= cfg.self_training.threshold).numpy()
    rows = pool[keep].copy()
    rows[cfg.data.label_column] = [cfg.data.labels[i] for i in pred[keep].tolist()]
    stats = {"pseudo_labelled": float(keep.sum()), "pool": float(len(pool))}
    if "hidden_label" in rows and len(rows):
        stats["pseudo_label_accuracy"] = float(
            (rows["hidden_label"].str.strip() == rows[cfg.data.label_column]).mean())
    return rows, stats


def run(cfg: FerryConfig, source: PretrainedSource, split_dir: Path, split_key: str,
        unlabelled: Path, on_round: Callable[[int, dict], None]) -> Trained:
    """All rounds; returns the outcome of the round with the best validation accuracy."""
    pool = pool_frame(cfg, unlabelled)
    outcome = _train(cfg, source, split_dir, split_key)
    best, record = outcome, {"pseudo_labelled": 0.0, "pool": float(len(pool))}
    for round_ in range(cfg.self_training.rounds + 1):
        scores, _ = scoring.evaluate(cfg, Path(outcome.model_dir), split_dir, "")
        on_round(round_, {**record, "val_accuracy": outcome.best_val_accuracy,
                          "test_accuracy": scores["test_accuracy"],
                          "train_seconds": outcome.train_seconds})
        if outcome.best_val_accuracy > best.best_val_accuracy:
            best = outcome
        if round_ == cfg.self_training.rounds:
            break
        pseudo, record = pseudo_label(cfg, Path(outcome.model_dir), pool)
        if pseudo.empty:
            on_round(round_ + 1, {**record, "stopped": 1.0})
            break
        round_dir, round_key = subsets.with_pseudo_labels(split_dir, split_key, pseudo,
                                                          round_ + 1)
        outcome = _train(cfg, source, round_dir, round_key)
    return best


def _train(cfg: FerryConfig, source: PretrainedSource, split_dir: Path,
           split_key: str) -> Trained:
    """One round's training, with at least ``self_training.min_steps`` optimizer steps (a
    10% labelled set would otherwise get a few dozen steps in the configured epochs)."""
    from ferry.data.splits import read_split

    n = len(read_split(split_dir, "train"))
    run_cfg = training.with_min_steps(cfg, n, cfg.self_training.min_steps)
    return training.train(run_cfg, source, split_dir, split_key, None, "transfer", None)
