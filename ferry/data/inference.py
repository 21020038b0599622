"""Guess what a team's file is: modality, text, label and split columns, and the labels.

``ferry init`` starts from a file nobody described to Ferry. Each guess comes with the reason
it was made (so a user can check it at a glance), flags override any guess, and a guess that
could go two ways is refused with the flag that settles it: a model trained on the wrong
label column would look fine in every receipt and be useless.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from ferry.data.loading import ROW, closest, read_table
from ferry.errors import DataError

SPLIT_NAMES = {"train", "training", "valid", "validation", "val", "dev", "test", "testing"}
FERRY_SPLITS = {"train", "validation", "test"}
LABEL_NAMES = {"label", "labels", "class", "category", "target", "y", "sentiment", "intent",
               "topic", "tag"}
MAX_CLASSES = 100  # more distinct values than this is an identifier or free text, not a label
MIN_ROWS_PER_CLASS = 5  # on average; fewer and the column is closer to an identifier
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Choice:
    """One inferred (or given) column and why."""

    column: str
    reason: str


@dataclass
class Inference:
    """What ``ferry init`` writes into a config, with the reasons it prints."""

    path: Path
    modality: Literal["text", "image"]
    modality_reason: str
    label: Choice
    labels: dict[str, int]  # label -> rows, most frequent first
    rows: int
    text: Choice | None = None  # text data
    path_column: Choice | None = None  # image manifest
    split: Choice | None = None  # a column Ferry can use as data.split_column
    notes: list[str] = field(default_factory=list)  # near misses worth a comment


def infer(path: Path, text: str | None = None, label: str | None = None,
          split: str | None = None) -> Inference:
    """Infer from a table (CSV, TSV, compressed, Parquet, JSONL) or an image folder."""
    if path.is_dir():
        if text:
            raise DataError(f"{path}: --text is for a table of texts; this is an image folder")
        return _infer_folder(path)
    frame = read_table(path, [])
    _check_given(path, frame, {"--text": text, "--label": label, "--split": split})
    path_col = _image_column(frame) if not text else None
    splits, notes = _split_column(frame, split)
    taken = {c for c in (path_col and path_col.column, splits and splits.column) if c}
    text_choice = None
    if path_col is None:
        text_choice = Choice(text, "given by --text") if text else \
            _text_column(path, frame, taken | {label})
        taken.add(text_choice.column)
    label_choice = Choice(label, "given by --label") if label else \
        _label_column(path, frame, taken)
    modality = "image" if path_col else "text"
    why = (f"column `{path_col.column}` holds image files" if path_col else
           f"a table of texts ({len(frame):,} rows)")
    return Inference(path, modality, why, label_choice, _counts(frame[label_choice.column]),
                     len(frame), text_choice, path_col, splits, notes)


def _check_given(path: Path, frame: pd.DataFrame, given: dict[str, str | None]) -> None:
    """A flag naming no column gets the closest names, like a config key would."""
    names = [c for c in frame.columns if c != ROW]
    for flag, column in given.items():
        if column is not None and column not in names:
            guess = closest(column, names)
            raise DataError(f"{path}: {flag} {column!r}: no such column" +
                            (f"; did you mean {guess!r}?" if guess else "") + f" found {names}")


def _infer_folder(path: Path) -> Inference:
    """One subfolder per class (optionally under train/validation/test), read like a run
    reads it so that init and the run agree on every file."""
    from ferry.config import DataConfig
    from ferry.data import images

    frame = images.read_images(path, DataConfig(modality="image", recipe=None, path=path))
    splits, notes = None, []
    if "split" in frame.columns:
        found = set(frame["split"])
        if found == FERRY_SPLITS:
            splits = Choice("split", "subfolders train/, validation/, test/")
        else:
            notes.append(f"subfolders {', '.join(f'{s}/' for s in sorted(found))} but no "
                         f"{', '.join(f'{s}/' for s in sorted(FERRY_SPLITS - found))}: Ferry "
                         "splits all images stratified (add the missing folder to keep your "
                         "split)")
    classes = frame["label"].nunique()
    why = f"a folder of {len(frame):,} images in {classes} class subfolders"
    return Inference(path, "image", why, Choice("label", f"{classes} class subfolders"),
                     _counts(frame["label"]), len(frame), None, None, splits, notes)


def _image_column(frame: pd.DataFrame) -> Choice | None:
    """A manifest: a column whose values are mostly image file names."""
    for column in (c for c in frame.columns if c != ROW):
        values = frame[column].dropna().astype(str).str.lower()
        share = values.str.endswith(IMAGE_SUFFIXES).mean() if len(values) else 0.0
        if share >= 0.9:
            return Choice(column, f"{share:.0%} of its values are image files")
    return None


def _split_column(frame: pd.DataFrame, given: str | None) -> tuple[Choice | None, list[str]]:
    """A column whose values are all split names; usable as data.split_column only when they
    are exactly train/validation/test (what the flow reads), else a note says what to rename."""
    if given:
        return Choice(given, "given by --split"), []
    for column in (c for c in frame.columns if c != ROW):
        values = set(frame[column].dropna().astype(str).str.strip())
        if len(values) < 2 or not {v.lower() for v in values} <= SPLIT_NAMES:
            continue
        if values == FERRY_SPLITS:
            return Choice(column, "values train/validation/test"), []
        return None, [f"`{column}` looks like a split ({', '.join(sorted(values))}) but Ferry "
                      "reads only train/validation/test: rename the values and pass --split "
                      f"{_quote(column)}, or keep the stratified split Ferry makes"]
    return None, []


def _text_column(path: Path, frame: pd.DataFrame, taken: set[str | None]) -> Choice:
    """The string column with the longest typical text among mostly unique ones."""
    stats = []
    for column in (c for c in frame.columns if c != ROW and c not in taken):
        values = frame[column].dropna().astype(str)
        if values.empty or pd.to_numeric(values, errors="coerce").notna().mean() > 0.5:
            continue
        stats.append((values.str.len().median(), values.nunique() / len(values), column))
    plausible = sorted((s for s in stats if s[1] >= 0.5), reverse=True)
    if not plausible:
        seen = ", ".join(f"`{c}` ({u:.0%} unique)" for _, u, c in stats) or "none"
        raise DataError(f"{path}: no column looks like the text (a string column with mostly "
                        f"unique values; string columns: {seen}); pass --text COLUMN")
    median, unique, column = plausible[0]
    runner = f"; next: `{plausible[1][2]}` (median {plausible[1][0]:.0f})" \
        if len(plausible) > 1 else ""
    return Choice(column, f"longest texts (median {median:.0f} chars), {unique:.0%} "
                          f"unique{runner}")


def _label_column(path: Path, frame: pd.DataFrame, taken: set[str | None]) -> Choice:
    """A column with few distinct values relative to its rows, each repeated; if several
    fit, one named like a label wins, else the file is ambiguous and the user decides."""
    candidates = []
    for column in (c for c in frame.columns if c != ROW and c not in taken):
        counts = frame[column].dropna().astype(str).str.strip().value_counts()
        rows = int(counts.sum())
        if rows < len(frame) / 2 or not 2 <= len(counts) <= min(MAX_CLASSES,
                                                                rows / MIN_ROWS_PER_CLASS):
            continue
        if (counts == 1).sum() > 0.1 * len(counts):  # a label's classes repeat
            continue
        candidates.append((column, counts))
    named = [c for c in candidates if c[0].strip().lower() in LABEL_NAMES]
    if len(named) == 1 or len(candidates) == 1:
        column, counts = (named or candidates)[0]
        how = "named like a label, " if named else ""
        return Choice(column, f"{how}{len(counts)} values, each on {counts.min():,}+ rows")
    example = f"ferry init {_quote(str(path))} --label "
    if not candidates:
        raise DataError(f"{path}: no column looks like the label (2 to {MAX_CLASSES} values, "
                        f"each repeated); pass --label COLUMN, e.g. `{example}COLUMN`")
    candidates.sort(key=lambda x: len(x[1]))
    listed = "; ".join(f"`{c}` ({len(n)} values: {_top(n)})" for c, n in candidates)
    raise DataError(f"{path}: {len(candidates)} columns could be the label: {listed}. Pass the "
                    f"one to predict with --label, e.g. `{example}{_quote(candidates[0][0])}`")


def _top(counts: pd.Series, n: int = 3) -> str:
    shown = ", ".join(f"{k} {v:,}" for k, v in counts.head(n).items())
    return shown + (", ..." if len(counts) > n else "")


def _counts(column: pd.Series) -> dict[str, int]:
    counts = column.dropna().astype(str).str.strip().value_counts()
    return {str(k): int(v) for k, v in counts.items() if k}


def _quote(text: str) -> str:
    return shlex.quote(text)
