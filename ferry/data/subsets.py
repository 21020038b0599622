"""Derived training sets of a validated split: k per class, hidden labels, pseudo-labels.

Validation and test are copied unchanged, so every derived set is scored on exactly the same
held-out examples as the full run. Each derived folder has its own key (the parent split key
plus what was derived), which keys the token cache and checkpoints like any other split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from ferry.data.loading import ROW
from ferry.data.splits import read_split, write_splits
from ferry.files import content_key


def _derive(split_dir: Path, train: pd.DataFrame, out_dir: Path) -> Path:
    write_splits({"train": train}, out_dir)
    for name in ("validation", "test"):
        shutil.copyfile(split_dir / f"{name}.csv", out_dir / f"{name}.csv")
    return out_dir


def per_class(split_dir: Path, split_key: str, label_column: str, k: int,
              seed: int) -> tuple[Path, str]:
    """Train on at most ``k`` examples per label (seeded); the learning curve's points."""
    train = read_split(split_dir, "train")
    picked = pd.concat([group.sample(n=min(k, len(group)), random_state=seed)
                        for _, group in train.groupby(label_column, sort=True)])
    key = content_key(parent=split_key, k=k, seed=seed)
    return _derive(split_dir, picked.sort_index(), split_dir / "subsets" / key), key


def hide_labels(split_dir: Path, split_key: str, label_column: str, fraction: float,
                seed: int) -> tuple[Path, str, Path]:
    """Keep ``fraction`` of the training labels (stratified); the rest become unlabelled.

    The unlabelled file keeps the hidden labels in ``hidden_label`` so that pseudo-label
    accuracy can be reported; training never reads that column.
    """
    from sklearn.model_selection import train_test_split

    train = read_split(split_dir, "train")
    kept, hidden = train_test_split(train, train_size=fraction, stratify=train[label_column],
                                    random_state=seed)
    key = content_key(parent=split_key, labelled=fraction, seed=seed)
    out = _derive(split_dir, kept.sort_index(), split_dir / "subsets" / key)
    pool = hidden.sort_index().rename(columns={label_column: "hidden_label"}).drop(columns=ROW)
    pool.to_csv(out / "unlabelled.csv", index=False, lineterminator="\n", encoding="utf-8")
    return out, key, out / "unlabelled.csv"


def with_pseudo_labels(split_dir: Path, split_key: str, pseudo: pd.DataFrame,
                       round_: int) -> tuple[Path, str]:
    """The labelled training set plus pseudo-labelled rows (same columns as train.csv)."""
    train = read_split(split_dir, "train")
    rows = pseudo.reindex(columns=train.columns, fill_value="")
    merged = pd.concat([train, rows], ignore_index=True)
    key = content_key(parent=split_key, round=round_, pseudo=content_key(
        rows=pseudo.astype(str).values.tolist()))
    return _derive(split_dir, merged, split_dir / "rounds" / key), key
