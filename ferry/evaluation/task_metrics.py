"""Metrics of any task layout (``ferry.models.tasks.Layout``) with scikit-learn.

The classic single task keeps its keys (``test_accuracy``, ``test_recall_fresh``...). With
several tasks every task's keys carry its name (``test_party_accuracy``) and the unprefixed
``accuracy``/``macro_f1``/``loss`` are their means, so promotion, the sweep and the receipts
read one number for the model. A multi-label task's ``accuracy`` is its subset accuracy
(every label of the row right), beside micro/macro-F1 and per-label F1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss

from ferry.evaluation import metrics
from ferry.models.tasks import MISSING, Layout, labelled

MEANS = ("accuracy", "macro_f1", "loss")


def scores(layout: Layout, targets: np.ndarray, probs: list[np.ndarray],
           prefix: str) -> dict[str, float]:
    """Every task's metrics (rows labelled for it only) and, with several tasks, the means
    (over the tasks labelled on some row of this split: a rare secondary task may have none
    in a small validation split; it then has no keys here)."""
    out: dict[str, float] = {}
    scored = []
    for i, task in enumerate(layout.tasks):
        y, p = layout.task_targets(targets, i), probs[i]
        keep = labelled(y, task.multi)
        if not keep.any() and len(layout.tasks) > 1:
            continue
        scored.append(i)
        inner = prefix + layout.prefix(i)
        if task.multi:
            out |= multilabel(y[keep], p[keep], task.labels, task.thresholds, inner)
        else:
            out |= metrics.scores(y[keep], p[keep], task.labels, inner)
    if len(layout.tasks) > 1:
        for key in MEANS:
            out[prefix + key] = float(np.mean([out[prefix + layout.prefix(i) + key]
                                               for i in scored]))
    return out


def multilabel(y: np.ndarray, probs: np.ndarray, labels: list[str],
               thresholds: list[float] | None, prefix: str) -> dict[str, float]:
    """Subset accuracy, micro/macro-F1, mean binary log-loss, per-label F1 at the thresholds."""
    pred = (probs >= np.asarray(thresholds or [0.5] * len(labels))).astype(int)
    per = f1_score(y, pred, average=None, labels=list(range(len(labels))), zero_division=0)
    out = {f"{prefix}accuracy": float(accuracy_score(y, pred)),
           f"{prefix}subset_accuracy": float(accuracy_score(y, pred)),
           f"{prefix}micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
           f"{prefix}macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
           f"{prefix}loss": float(np.mean([log_loss(y[:, k], probs[:, k], labels=[0, 1])
                                           for k in range(len(labels))]))}
    return out | {f"{prefix}f1_{name}": float(per[k]) for k, name in enumerate(labels)}


def tune_thresholds(y: np.ndarray, probs: np.ndarray) -> list[float]:
    """Per label, the decision threshold with the best validation F1 (0.5 when the label has
    no positive there: nothing to tune on). Candidates are the validation scores themselves."""
    out = []
    for k in range(y.shape[1]):
        if y[:, k].sum() == 0:
            out.append(0.5)
            continue
        grid = np.unique(np.concatenate([probs[:, k], [0.5]]))
        f1 = [f1_score(y[:, k], probs[:, k] >= t, zero_division=0) for t in grid]
        out.append(float(grid[int(np.argmax(f1))]))
    return out


def write_artifacts(layout: Layout, targets: np.ndarray, probs: list[np.ndarray],
                    out_dir: Path) -> list[Path]:
    """Confusion matrix and report per single-label task; multi-label tasks get their
    per-label report as JSON. With several tasks each task's files go to a folder of its
    name, and that folder is what is returned (its files share their names)."""
    import json

    paths: list[Path] = []
    for i, task in enumerate(layout.tasks):
        folder = out_dir if len(layout.tasks) == 1 else out_dir / task.name
        y = layout.task_targets(targets, i)
        keep = labelled(y, task.multi)
        if task.multi:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "multilabel_report.json"
            path.write_text(json.dumps(multilabel(y[keep], probs[i][keep], task.labels,
                                                  task.thresholds, ""), indent=2),
                            encoding="utf-8")
            paths.append(path)
        else:
            paths += metrics.write_artifacts(y[keep], probs[i][keep], task.labels, folder)
    if len(layout.tasks) > 1:
        return [out_dir / task.name for task in layout.tasks]
    return paths


def predictions(layout: Layout, targets: np.ndarray, probs: list[np.ndarray]) -> dict:
    """Per-example records for the receipts: the classic ``y_true``/``y_pred``/``confidence``
    lists of the primary task, and with several tasks (or multi-label) a ``tasks`` entry per
    task (multi-label rows as 0/1 lists; an unlabelled row's ``y_true`` is None)."""
    out: dict = {}
    for i, task in enumerate(layout.tasks):
        y, p = layout.task_targets(targets, i), probs[i]
        if task.multi:
            cut = np.asarray(task.thresholds or [0.5] * len(task.labels))
            rec = {"y_true": [None if (r == MISSING).any() else r.tolist() for r in y],
                   "y_pred": (p >= cut).astype(int).tolist(),
                   "confidence": np.abs(p - 0.5).mean(1).round(6).tolist()}
        else:
            rec = {"y_true": [None if v == MISSING else int(v) for v in y.tolist()],
                   "y_pred": p.argmax(1).tolist(), "confidence": p.max(1).round(6).tolist()}
        if i == 0:
            out |= rec
        if not layout.classic:
            out.setdefault("tasks", {})[task.name] = rec
    return out
