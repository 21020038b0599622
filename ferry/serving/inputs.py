"""A batch to score, read and validated like training data minus the labels.

Formats are the training data's (CSV, TSV, Parquet, JSONL, compressed text; images as a
manifest with a path column or a folder of image files), read by the same ``read_table`` so a
malformed file fails with the same one-line messages (file, line, column, what to change).
Rows keep their 1-based ``_row`` numbers through the repairs, so every scored row can be
traced back to its input row and every dropped one is named in the report.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ferry.config import FerryConfig
from ferry.data.loading import COMPRESSIONS, FORMATS, ROW
from ferry.errors import DataError


@dataclass
class Batch:
    """The rows to score (``_row`` numbers as in the input), the repairs made, the column
    scored (texts or image paths), the input's md5 and the validation report."""

    frame: pd.DataFrame
    column: str
    rows_in: int
    repairs: list
    md5: str
    report: Path

    @property
    def items(self) -> list[str]:
        return self.frame[self.column].astype(str).tolist()


def read(cfg: FerryConfig, path: Path, report_dir: Path) -> Batch:
    """Read ``path``, run the scoring suite and the repair policy (``checks.check_batch``);
    a file that cannot be read, lacks the column, or fails what cannot be repaired raises a
    DataError / DataValidationError before anything is scored or written."""
    from ferry.data.checks import check_batch

    if not path.exists():
        raise DataError(f"{path}: no such file or folder to score; check the path")
    data = cfg.data
    column = data.text_column if data.modality == "text" else data.path_column
    frame = _read_images(path, cfg) if data.modality == "image" else _read_texts(path, cfg)
    checked = check_batch(frame, data, path, report_dir)
    return Batch(checked.frame, column, len(frame), checked.repairs, md5(path), checked.report)


def _read_texts(path: Path, cfg: FerryConfig) -> pd.DataFrame:
    from ferry.data.loading import read_table

    if path.is_dir():
        raise DataError(f"{path}: is a directory; a batch of texts to score is one file "
                        f"(CSV, TSV, Parquet or JSONL) with a {cfg.data.text_column!r} column")
    return read_table(path, {cfg.data.text_column: "data.text_column (--set "
                             "data.text_column=NAME)"})


def _read_images(path: Path, cfg: FerryConfig) -> pd.DataFrame:
    """A manifest (paths relative to it) or a folder (every image file under it, sorted),
    with each file's inspection (``problem`` is empty when it decodes)."""
    from ferry.data import images
    from ferry.data.loading import read_table

    column = cfg.data.path_column
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.suffix.lower() in images.SUFFIXES)
        if not files:
            raise DataError(f"{path}: no image files (suffixes {sorted(images.SUFFIXES)})")
        frame = pd.DataFrame({ROW: range(1, len(files) + 1),
                              column: [str(f.absolute()) for f in files]})
    else:
        frame = read_table(path, {column: "data.path_column (--set data.path_column=NAME)"})
        rel = frame[column]
        frame[column] = [None if pd.isna(p) or not str(p).strip() else
                         str((path.parent / str(p).strip()).absolute()) for p in rel]
    paths = frame[column].fillna("").tolist()
    checked = images.inspect([p or str(path / "(empty)") for p in paths],
                             images.data_root(path))
    return pd.concat([frame.reset_index(drop=True), checked[["problem"]]], axis=1)


def md5(path: Path) -> str:
    """The input's md5 (a folder: over its files' relative names and contents, in order),
    recorded with every scored row: which bytes each answer came from."""
    digest = hashlib.md5()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def stem(path: Path) -> str:
    """``incoming/batch.csv.gz`` -> ``batch``: the name without its format suffixes."""
    name = path.name
    for suffixes in (COMPRESSIONS, FORMATS):
        for suffix in suffixes:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name
