"""The sweep's comparison of strategies: a table and a chart a reviewer reads at a glance."""

from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("test_accuracy", "test_macro_f1", "train_minutes", "trainable_params",
           "transfer_gain", "transfer_gain_ci_low", "transfer_gain_ci_high")


def best(rows: list[dict]) -> dict:
    """Highest validation accuracy; ties go to the cheaper strategy (fewer trainable params)."""
    return max(rows, key=lambda r: (r["val_accuracy"], -(r["trainable_params"] or 0)))


def write(rows: list[dict], out_dir: Path) -> list[Path]:
    """``comparison.csv`` and ``comparison.png`` (test accuracy, minutes, trainable params)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "comparison.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return [table, _chart(rows, out_dir / "comparison.png")]


def _chart(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["strategy"] for r in rows]
    panels = [("test_accuracy", "test accuracy", False), ("train_minutes", "training minutes",
              False), ("trainable_params", "trainable parameters", True)]
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
    fig.suptitle("Transfer strategies on one data version (best by validation is registered)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
