"""Learning curve: how much pretrained knowledge is worth as labelled data grows.

Each point trains the configured strategy (pretrained) and the scratch model on k labelled
examples per class with the same seed and budget, and scores both on the full test split.
Tiny training sets would get only a handful of optimizer steps in the configured epochs, so
both arms get at least ``curve.min_steps`` steps, the same for both: more passes over the data
per epoch (``train.passes_per_epoch``), not more epochs, so validation still runs once an epoch.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ferry.config import FerryConfig
from ferry.data import subsets
from ferry.data.splits import read_split
from ferry.models.sources import PretrainedSource
from ferry.transfer import scoring, training
from ferry.transfer.records import metric_prefix

ARMS = ("pretrained", "scratch")


def grid(cfg: FerryConfig) -> list[tuple[int | str, int, str]]:
    """Every (k, seed, arm) point of the curve."""
    seeds = [cfg.train.seed + i for i in range(cfg.curve.seeds)]
    return [(k, seed, arm) for k in cfg.curve.sizes for seed in seeds for arm in ARMS]


def point(cfg: FerryConfig, source: PretrainedSource, split_dir: Path, split_key: str,
          k: int | str, seed: int, arm: str) -> dict:
    """Train and score one arm at one size and seed (cached like any training)."""
    if k != "all":
        split_dir, split_key = subsets.per_class(split_dir, split_key, cfg.data.label_column,
                                                 int(k), seed)
    n = len(read_split(split_dir, "train"))
    seeded = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": seed})})
    run_cfg = training.with_min_steps(seeded, n, cfg.curve.min_steps)
    steps = run_cfg.train.epochs * run_cfg.train.passes_per_epoch * math.ceil(
        n / cfg.train.batch_size)
    role = "scratch" if arm == "scratch" else "transfer"
    prefix = metric_prefix(role)
    out = training.train(run_cfg, source, split_dir, split_key, None, role, None)
    scores, _ = scoring.evaluate(run_cfg, Path(out.model_dir), split_dir, prefix)
    return {"k": str(k), "seed": seed, "arm": arm, "n_train": n,
            "steps": steps,
            "test_accuracy": scores[f"{prefix}test_accuracy"],
            "test_macro_f1": scores[f"{prefix}test_macro_f1"], "train_seconds": out.train_seconds}


def summarise(points: list[dict]) -> list[dict]:
    """Mean and spread over seeds per (k, arm), and the gain of pretrained over scratch."""
    import numpy as np

    rows = []
    for k in dict.fromkeys(p["k"] for p in points):
        row: dict = {"k": k, "n_train": max(p["n_train"] for p in points if p["k"] == k)}
        for arm in ARMS:
            acc = np.array([p["test_accuracy"] for p in points if p["k"] == k and p["arm"] == arm])
            row[f"{arm}_accuracy"] = float(acc.mean())
            row[f"{arm}_std"] = float(acc.std())
            row["seeds"] = len(acc)
        row["gain"] = row["pretrained_accuracy"] - row["scratch_accuracy"]
        rows.append(row)
    return rows


def write(points: list[dict], rows: list[dict], out_dir: Path) -> list[Path]:
    """``curve.csv`` (summary), ``curve_points.csv`` (every run) and ``curve.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for name, table in (("curve.csv", rows), ("curve_points.csv", points)):
        with (out_dir / name).open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        files.append(out_dir / name)
    return [*files, _plot(rows, out_dir / "curve.png")]


def _plot(rows: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    xs = [r["n_train"] for r in rows]
    for arm, colour in zip(ARMS, ("#228833", "#aa3377"), strict=True):
        ys = [r[f"{arm}_accuracy"] for r in rows]
        err = [r[f"{arm}_std"] for r in rows]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=colour, label=arm)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training examples (k per class x classes)")
    ax.set_ylabel("test accuracy (mean over seeds)")
    ax.set_title("Learning curve: pretrained vs scratch")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
