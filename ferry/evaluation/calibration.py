"""Calibrated confidences: temperature scaling, expected calibration error, reliability diagram.

A fine-tuned network's softmax is usually over-confident (a 0.95 that is right 80% of the
time), which misleads anyone who thresholds on it: self-training's pseudo-labels, a reviewer
reading per-example confidences, a downstream abstain rule. Temperature scaling (Guo et al.
2017, "On Calibration of Modern Neural Networks") divides the logits of a single-label task by
one scalar T fitted on the validation split; it never changes the argmax, so accuracy and
every answer stay as they were. Multi-label tasks keep their tuned thresholds instead.

scikit-learn has only binary calibration curves and no multi-class ECE, so the top-label ECE
and the diagram are written here by hand (numpy, matplotlib Agg).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ferry.models.tasks import Layout

BOUNDS = (0.05, 20.0)  # a fitted T outside this is a degenerate fit, not a calibration
MIN_ROWS = 10  # fewer labelled validation rows: too little to fit even one parameter
BINS = 15


def fit_temperature(logits, targets, min_rows: int = MIN_ROWS) -> float:
    """The T minimising the validation negative log-likelihood of ``softmax(logits / T)``.

    Optimised over log T (T stays positive, the problem is smooth and one-dimensional) with
    L-BFGS in float64, so the same logits always give the same T: re-evaluating a model
    rewrites the same value. Rows with a negative target are unlabelled and ignored. Returns
    1.0 (no change) with fewer than ``min_rows`` labelled rows; clamps to ``BOUNDS`` (perfectly
    separated validation data would otherwise drive T to 0)."""
    import torch

    x = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    keep = y >= 0
    x, y = x[keep], y[keep]
    if len(y) < min_rows or x.ndim != 2 or x.shape[1] < 2 or not torch.isfinite(x).all():
        return 1.0
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=200, tolerance_grad=1e-10,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    t = float(log_t.detach().exp())
    return 1.0 if not math.isfinite(t) else float(min(max(t, BOUNDS[0]), BOUNDS[1]))


def _bins(probs: np.ndarray, targets: np.ndarray, bins: int):
    """Per equal-width confidence bin ((lo, hi], the first also holds 0): row count, mean
    confidence and accuracy of the top label, over the labelled rows."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets)
    keep = targets >= 0
    conf, right = probs[keep].max(1), probs[keep].argmax(1) == targets[keep]
    which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    safe = np.maximum(count, 1)
    return (count, np.bincount(which, conf, bins) / safe,
            np.bincount(which, right.astype(float), bins) / safe)


def expected_calibration_error(probs, targets, bins: int = BINS) -> float:
    """Top-label ECE: the row-weighted mean gap between confidence and accuracy over
    ``bins`` equal-width confidence bins (unlabelled rows, target < 0, ignored; NaN with no
    labelled row)."""
    count, conf, acc = _bins(probs, targets, bins)
    total = count.sum()
    return float("nan") if total == 0 else float((count * np.abs(acc - conf)).sum() / total)


def reliability_diagram(probs_raw, probs_cal, targets, path: Path, bins: int = BINS,
                        title: str = "Reliability (test split)") -> Path:
    """Accuracy against confidence per bin, before and after temperature scaling, with the
    diagonal of perfect calibration and both ECEs in the legend (one PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    for probs, name, colour in ((probs_raw, "raw softmax", "tab:red"),
                                (probs_cal, "temperature-scaled", "tab:blue")):
        count, conf, acc = _bins(probs, targets, bins)
        seen = count > 0
        ece = expected_calibration_error(probs, targets, bins)
        ax.plot(conf[seen], acc[seen], marker="o", color=colour,
                label=f"{name} (ECE {ece:.4f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top label)", ylabel="accuracy",
           title=title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)  # off the points
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def calibrate(layout: Layout, targets: np.ndarray, logits) -> bool:
    """Fit every single-label task's temperature on validation (``targets``/``logits`` of
    the validation split), in place; whether any temperature changed."""
    changed = False
    for i, task in enumerate(layout.tasks):
        if task.multi:
            continue
        t = fit_temperature(np.asarray(logits)[:, layout.logits_of(i)],
                            layout.task_targets(targets, i))
        changed |= t != task.temperature
        task.temperature = t
    return changed


def scores(layout: Layout, targets: np.ndarray, logits, prefix: str) -> dict[str, float]:
    """Per single-label task: test ECE of the raw and the calibrated softmax, and its
    temperature, keyed as ``task_metrics.scores`` keys (``{prefix}test_ece_raw``,
    ``{prefix}test_ece``, ``{prefix}temperature``; with several tasks the task's name
    follows ``test_``/``prefix``). A task with no labelled test row has no keys."""
    raw, cal = layout.probabilities(logits, calibrated=False), layout.probabilities(logits)
    out: dict[str, float] = {}
    for i, task in enumerate(layout.tasks):
        y = layout.task_targets(targets, i)
        if task.multi or not (y >= 0).any():
            continue
        inner = layout.prefix(i)
        out[f"{prefix}test_{inner}ece_raw"] = expected_calibration_error(raw[i], y)
        out[f"{prefix}test_{inner}ece"] = expected_calibration_error(cal[i], y)
        out[f"{prefix}{inner}temperature"] = float(task.temperature)
    return out


def diagrams(layout: Layout, targets: np.ndarray, logits, out_dir: Path) -> list[Path]:
    """``reliability.png`` per single-label task with labelled test rows (several tasks: in
    the task's own folder, as ``task_metrics.write_artifacts`` lays them out)."""
    raw, cal = layout.probabilities(logits, calibrated=False), layout.probabilities(logits)
    paths = []
    for i, task in enumerate(layout.tasks):
        y = layout.task_targets(targets, i)
        if task.multi or not (y >= 0).any():
            continue
        folder = out_dir if len(layout.tasks) == 1 else out_dir / task.name
        title = "Reliability (test split)" + ("" if len(layout.tasks) == 1 else f": {task.name}")
        paths.append(reliability_diagram(raw[i], cal[i], y, folder / "reliability.png",
                                         title=title))
    return paths
