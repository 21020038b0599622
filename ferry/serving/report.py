"""What a scoring run keeps besides its metrics: the confidence histogram, the predicted-class
distribution (CSV and chart, beside the reference's) and the drift record, as files in the
batch's report folder (next to its validation report), all logged to the scoring run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ferry.files import write_atomic


def write(out_dir: Path, labels: list[str], predicted: np.ndarray, confidence: np.ndarray,
          drift: dict[str, Any] | None, reference: dict[str, float] | None) -> list[Path]:
    """The run's files (each written whole, the folder created if needed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = np.bincount(predicted, minlength=len(labels))
    share = counts / max(int(counts.sum()), 1)
    rows = ["label,count,fraction,reference_fraction"]
    for i, label in enumerate(labels):
        ref = "" if reference is None else f"{reference.get(label, 0.0):.6f}"
        rows.append(f"{_csv(label)},{int(counts[i])},{share[i]:.6f},{ref}")
    csv = out_dir / "prediction_distribution.csv"
    text = "\n".join(rows) + "\n"
    write_atomic(csv, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    files = [csv, _histogram(out_dir / "confidence_histogram.png", confidence),
             _bars(out_dir / "prediction_distribution.png", labels, share, reference)]
    if drift is not None:
        path = out_dir / "drift.json"
        body = json.dumps(drift, indent=2, default=float)
        write_atomic(path, lambda tmp: tmp.write_text(body, encoding="utf-8"))
        files.append(path)
    return files


def _csv(text: str) -> str:
    return f'"{text}"' if any(c in text for c in ',"\n') else text


def _histogram(path: Path, confidence: np.ndarray) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(confidence, bins=20, range=(0, 1), color="#4477aa")
    ax.set_xlabel("confidence (calibrated top probability)")
    ax.set_ylabel("rows")
    ax.set_title(f"Confidence of {len(confidence)} scored rows "
                 f"(mean {float(np.mean(confidence)) if len(confidence) else 0:.3f})")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _bars(path: Path, labels: list[str], share: np.ndarray,
          reference: dict[str, float] | None) -> Path:
    plt = _pyplot()
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(labels) + 2), 3.5))
    width = 0.4 if reference is not None else 0.8
    ax.bar(x - (width / 2 if reference is not None else 0), share, width, label="batch")
    if reference is not None:
        ax.bar(x + width / 2, [reference.get(k, 0.0) for k in labels], width,
               label="reference (registration)")
        ax.legend()
    ax.set_xticks(x, labels, rotation=45 if len(labels) > 4 else 0, ha="right"
                  if len(labels) > 4 else "center")
    ax.set_ylabel("fraction of rows")
    ax.set_title("Predicted classes")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
