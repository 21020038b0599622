"""The sweep's comparison of strategies: a table and a chart a reviewer reads at a glance."""

from __future__ import annotations

import csv
import math
from pathlib import Path

COLUMNS = ("test_accuracy", "test_macro_f1", "train_minutes", "trainable_params",
           "transfer_gain", "transfer_gain_ci_low", "transfer_gain_ci_high")


def best(rows: list[dict], metric: str = "accuracy") -> dict:
    """Highest ``val_<metric>`` (``train.select_on``: what each training picked its best
    epoch on); ties go to the cheaper strategy (fewer trainable params). A row without the
    figure ranks last rather than failing the sweep."""
    def rank(row: dict) -> tuple[float, int]:
        value = row.get(f"val_{metric}")
        return (-math.inf if value is None else value, -(row["trainable_params"] or 0))

    return max(rows, key=rank)


def write(rows: list[dict], out_dir: Path, metric: str = "accuracy") -> list[Path]:
    """``comparison.csv`` and ``comparison.png`` (test ``metric``, minutes, trainable
    params)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "comparison.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [table, _chart(rows, out_dir / "comparison.png", metric)]


def _chart(rows: list[dict], path: Path, metric: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["strategy"] for r in rows]
    panels = [(f"test_{metric}", f"test {metric.replace('_', '-')}", False),
              ("train_minutes", "training minutes", False),
              ("trainable_params", "trainable parameters", True)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.5 * len(rows) + 1.8), sharey=True)
    for ax, (key, title, log) in zip(axes, panels, strict=True):
        values = [float(r[key] or 0) for r in rows]
        ax.barh(names, [max(v, 1) if log else v for v in values], color="#4477aa")
        ax.set_title(title)
        if log:
            ax.set_xscale("log")
        for y, v in enumerate(values):
            ax.text(ax.get_xlim()[1], y, f" {v:,.3g}", va="center", fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"Transfer strategies on one data version (best by validation "
                 f"{metric.replace('_', '-')} is registered)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
