"""Classification metrics computed with scikit-learn, and the artifacts a reviewer reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_recall_fscore_support,
)


def scores(y_true: np.ndarray, probs: np.ndarray, labels: list[str],
           prefix: str) -> dict[str, float]:
    """Accuracy, macro-F1, log-loss and per-class precision/recall/F1, keys prefixed."""
    y_pred = probs.argmax(1)
    idx = list(range(len(labels)))
    out = {f"{prefix}accuracy": float(accuracy_score(y_true, y_pred)),
           f"{prefix}macro_f1": float(f1_score(y_true, y_pred, labels=idx, average="macro",
                                              zero_division=0)),
           f"{prefix}loss": float(log_loss(y_true, probs, labels=idx))}
    prec, rec, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=idx,
                                                       zero_division=0)
    for i, name in enumerate(labels):
        out[f"{prefix}precision_{name}"] = float(prec[i])
        out[f"{prefix}recall_{name}"] = float(rec[i])
        out[f"{prefix}f1_{name}"] = float(f1[i])
    return out


def write_artifacts(y_true: np.ndarray, probs: np.ndarray, labels: list[str],
                    out_dir: Path) -> list[Path]:
    """Confusion matrix (PNG + JSON) and the classification report (text + JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    out_dir.mkdir(parents=True, exist_ok=True)
    y_pred = probs.argmax(1)
    idx = list(range(len(labels)))
    matrix = confusion_matrix(y_true, y_pred, labels=idx)
    display = ConfusionMatrixDisplay(matrix, display_labels=labels)
    display.plot(cmap="Blues", colorbar=False)
    display.ax_.set_title("Confusion matrix (test split)")
    png = out_dir / "confusion_matrix.png"
    display.figure_.savefig(png, dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(display.figure_)
    report = classification_report(y_true, y_pred, labels=idx, target_names=labels,
                                   zero_division=0, digits=4)
    (out_dir / "classification_report.txt").write_text(report, encoding="utf-8")
    (out_dir / "confusion_matrix.json").write_text(
        json.dumps({"labels": labels, "matrix": matrix.tolist()}), encoding="utf-8")
    return [png, out_dir / "classification_report.txt", out_dir / "confusion_matrix.json"]


def plot_history(history: list[dict], path: Path) -> Path:
    """Train loss and validation loss/accuracy per epoch, one figure (a learning curve)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    for key in ("train_loss", "val_loss"):
        if any(key in r for r in history):
            left.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o", label=key)
    for key in ("val_accuracy", "val_macro_f1"):
        if any(key in r for r in history):
            right.plot(epochs, [r.get(key, float("nan")) for r in history], marker="o",
                       label=key)
    for ax, title in ((left, "loss"), (right, "validation")):
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
