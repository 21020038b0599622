"""Stratified, seeded train/validation/test splits, written next to (never inside) ``data/``.

The same function backs the ``prepare`` stage of dvc.yaml and the flow, so ``dvc repro`` and
``ferry run`` produce identical split files for the same data version and split settings.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from ferry.config import DataConfig
from ferry.data import cells
from ferry.data.loading import ROW
from ferry.errors import DataError
from ferry.files import write_atomic

SPLITS = ("train", "validation", "test")


def split_frame(frame: pd.DataFrame, cfg: DataConfig) -> dict[str, pd.DataFrame]:
    """Use the data's own split column if configured, else a stratified seeded split."""
    return split_with_note(frame, cfg)[0]


def split_with_note(frame: pd.DataFrame,
                    cfg: DataConfig) -> tuple[dict[str, pd.DataFrame], str]:
    """The split, and one line saying how it was made (for the validation report)."""
    if cfg.split_column:
        return _given_splits(frame, cfg), f"split given by column {cfg.split_column!r}"
    strata, how = _strata(frame, cfg)
    if cfg.max_rows and len(frame) > cfg.max_rows:
        frame, _ = train_test_split(frame, train_size=cfg.max_rows, stratify=strata,
                                    random_state=cfg.split.seed)
        strata = None if strata is None else strata.loc[frame.index]
    held = cfg.split.validation + cfg.split.test
    try:
        train, rest = train_test_split(frame, test_size=held, stratify=strata,
                                       random_state=cfg.split.seed)
        val, test = train_test_split(rest, test_size=cfg.split.test / held,
                                     stratify=None if strata is None else strata.loc[rest.index],
                                     random_state=cfg.split.seed)
    except ValueError as exc:
        raise DataError(f"{cfg.path}: cannot make a stratified split ({exc}); each label needs "
                        "at least a few rows in every split") from None
    parts = {name: part.sort_values(ROW) for name, part in
             zip(SPLITS, (train, val, test), strict=True)}
    return parts, f"{how}; seed {cfg.split.seed}"


def _strata(frame: pd.DataFrame, cfg: DataConfig) -> tuple[pd.Series | None, str]:
    """What the split is stratified on: the primary task's label. A multi-label primary task
    cannot be stratified on its label combinations (too many, too rare): on the first label of
    each cell when every such class has enough rows for two in each held-out split, else not
    at all."""
    if cfg.split.stratify:
        if cfg.split.stratify not in frame.columns:
            raise DataError(f"{cfg.path}: data.split.stratify names column "
                            f"{cfg.split.stratify!r}, which is not in the file; found "
                            f"{list(frame.columns)}")
        column = frame[cfg.split.stratify].fillna("").astype(str).str.strip()
        return column, f"split stratified on {cfg.split.stratify!r} (data.split.stratify)"
    task = cfg.task_list()[0]
    if not cells.multi(task):
        return frame[task.column], f"split stratified on {task.column!r}"
    first = cells.first_labels(frame, task)
    need = math.ceil(round(2 / min(cfg.split.validation, cfg.split.test), 6))
    rare = {k: int(v) for k, v in first.value_counts().items() if v < need}
    if not rare:
        return first, (f"split stratified on the first label of each {task.column!r} cell "
                       "(multi-label: label combinations cannot be stratified on)")
    shown = ", ".join(f"{k or '(empty)'} {v}" for k, v in sorted(rare.items())[:5])
    return None, (f"split not stratified: {task.column!r} is multi-label and some first labels "
                  f"have fewer than {need} rows ({shown}{', ...' if len(rare) > 5 else ''})")


def _given_splits(frame: pd.DataFrame, cfg: DataConfig) -> dict[str, pd.DataFrame]:
    col = cfg.split_column
    assert col is not None
    if col not in frame.columns:
        raise DataError(f"{cfg.path}: split column {col!r} not found; found {list(frame.columns)}")
    bad = frame[~frame[col].isin(SPLITS)]
    if not bad.empty:
        row = bad.iloc[0]
        raise DataError(f"{cfg.path}: row {row[ROW]}, column {col!r}: value {row[col]!r}; "
                        f"expected one of {list(SPLITS)}")
    parts = {name: frame[frame[col] == name] for name in SPLITS}
    empty = [name for name, part in parts.items() if part.empty]
    if empty:
        raise DataError(f"{cfg.path}: column {col!r} has no rows for split(s) {empty}")
    return parts


def write_splits(parts: dict[str, pd.DataFrame], out_dir: Path) -> Path:
    """Write one CSV per split (atomically per file) and return the folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        write_atomic(out_dir / f"{name}.csv", lambda tmp, part=part: part.to_csv(
            tmp, index=False, lineterminator="\n", encoding="utf-8"))
    return out_dir


def read_split(split_dir: Path, name: str) -> pd.DataFrame:
    """Read one split written by ``write_splits`` (texts as strings, never NaN)."""
    return pd.read_csv(split_dir / f"{name}.csv", dtype=str, keep_default_na=False)
