"""The transfer receipt: how much pretrained knowledge helped, with its uncertainty.

The gain is the test accuracy of the transferred model minus that of the scratch model on the
same test examples. Its interval comes from a paired bootstrap over test examples (both models
are scored on the same resample), which is what makes small gains on small test sets honest:
when the whole interval lies below zero, the run is tagged ``negative_transfer``.

Several tasks (``ferry.models.tasks.Layout``): an example's correctness is the mean over the
tasks it is labelled for (a multi-label task counts as right only when all the row's labels
are), so the overall gain stays one paired number per example; every task also gets its own
gain on its own labelled rows. The records read here are the ``predictions.json`` records of
``ferry.evaluation.task_metrics.predictions`` (an unlabelled row's ``y_true`` is None).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferry.models.tasks import Layout


def paired_bootstrap(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                     samples: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """(accuracy(a) - accuracy(b), lower, upper) with a percentile bootstrap interval."""
    return paired_bootstrap_scores((pred_a == y_true).astype(np.float64),
                                   (pred_b == y_true).astype(np.float64),
                                   samples, confidence, seed)


def paired_bootstrap_scores(score_a: np.ndarray, score_b: np.ndarray, samples: int,
                            confidence: float, seed: int) -> tuple[float, float, float]:
    """(mean(a - b), lower, upper) of per-example scores in [0, 1], resampling examples.
    Examples scored NaN on either side (no label for what is measured) are left out, so a
    row another task alone labels does not count as a tie."""
    diff = np.asarray(score_a, np.float64) - np.asarray(score_b, np.float64)
    diff = diff[~np.isnan(diff)]
    if not len(diff):
        raise ValueError("no labelled example to compare the two models on")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(samples, len(diff)))
    means = diff[idx].mean(1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(low), float(high)


def correctness(record: dict[str, Any]) -> np.ndarray:
    """Per example of one task's record: 1.0 right, 0.0 wrong, NaN unlabelled (multi-label
    rows are 0/1 lists: right only when the whole list is)."""
    return np.array([np.nan if t is None else float(t == p)
                     for t, p in zip(record["y_true"], record["y_pred"], strict=True)])


def example_correctness(record: dict[str, Any]) -> np.ndarray:
    """Per example: its correctness, averaged over the tasks it is labelled for (NaN when it
    is labelled for none). The classic record (no ``tasks``) is its one task."""
    tasks = record.get("tasks")
    if not tasks:
        return correctness(record)
    stack = np.vstack([correctness(rec) for rec in tasks.values()])
    labelled = ~np.isnan(stack)
    count = labelled.sum(0)
    total = np.where(labelled, stack, 0.0).sum(0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def gains(mine: dict[str, Any], base: dict[str, Any], name: str, samples: int,
          confidence: float, seed: int) -> dict[str, float]:
    """``name``, ``name_ci_low``, ``name_ci_high``: the gain of ``mine`` over ``base`` on the
    same test rows; with several tasks also ``name_<task>`` (and its interval) per task, on
    that task's labelled rows (a task with none there gets no gain)."""
    out = _named(name, paired_bootstrap_scores(example_correctness(mine),
                                               example_correctness(base),
                                               samples, confidence, seed))
    tasks = mine.get("tasks") or {}
    if len(tasks) > 1:
        for task, rec in tasks.items():
            a, b = correctness(rec), correctness(base["tasks"][task])
            if not np.isnan(a).all():
                out |= _named(f"{name}_{task}",
                              paired_bootstrap_scores(a, b, samples, confidence, seed))
    return out


def _named(name: str, result: tuple[float, float, float]) -> dict[str, float]:
    gain, low, high = result
    return {name: gain, f"{name}_ci_low": low, f"{name}_ci_high": high}


def same_examples(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two records hold the same labels on the same rows (every task's)."""
    def labels(record: dict[str, Any]) -> tuple:
        return record["y_true"], {k: v["y_true"] for k, v in (record.get("tasks") or {}).items()}

    return labels(a) == labels(b)


def accuracy(record: dict[str, Any]) -> float:
    """The record's test accuracy as evaluation reports it: one task's on its rows, or with
    several tasks the mean of each task's accuracy on its labelled rows."""
    tasks = record.get("tasks")
    parts = [correctness(rec) for rec in tasks.values()] if tasks else [correctness(record)]
    return float(np.mean([np.nanmean(p) for p in parts if not np.isnan(p).all()]))


def scores(layout: Layout, record: dict[str, Any]) -> dict[str, float]:
    """``accuracy`` and ``macro_f1`` of a record (means over tasks, each on its labelled rows,
    macro-F1 over all of the task's labels): one function for the model and a baseline, so
    a comparison of the two reads both the same way."""
    from sklearn.metrics import f1_score

    recs = [(record.get("tasks") or {}).get(t.name, record) for t in layout.tasks]
    f1s = []
    for task, rec in zip(layout.tasks, recs, strict=True):
        rows = [i for i, t in enumerate(rec["y_true"]) if t is not None]
        if not rows:
            continue
        y = np.asarray([rec["y_true"][i] for i in rows])
        p = np.asarray([rec["y_pred"][i] for i in rows])
        extra = {} if task.multi else {"labels": list(range(len(task.labels)))}
        f1s.append(float(f1_score(y, p, average="macro", zero_division=0, **extra)))
    return {"accuracy": accuracy(record), "macro_f1": float(np.mean(f1s))}
