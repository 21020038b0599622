"""Read a user's labelled table (CSV or Parquet) with errors that point at the file and row.

Rows are numbered from 1 (the first data row, header excluded) in every message and report,
in a ``_row`` column that travels with the frame through validation and splitting.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ferry.errors import DataError

ROW = "_row"


def read_table(path: Path, columns: list[str], strip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``path`` and check that ``columns`` exist; texts stay strings, the ``strip``
    columns (labels) lose surrounding whitespace (``" fresh "`` is the label ``fresh``)."""
    if not path.exists():
        raise DataError(f"data file not found: {path} (build it with `ferry data build` or set "
                        "data.path to your CSV/Parquet file)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file")
    if path.suffix.lower() == ".parquet":
        frame = _read_parquet(path)
    elif path.suffix.lower() in {".csv", ".tsv", ".txt"}:
        frame = _read_csv(path)
    else:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; expected .csv or .parquet")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(frame.columns)}. "
                        "Set data.text_column / data.label_column to the right names.")
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    for column in strip:
        frame[column] = frame[column].map(lambda v: v.strip() if isinstance(v, str) else v)
    frame.insert(0, ROW, range(1, len(frame) + 1))
    return frame


def _read_csv(path: Path) -> pd.DataFrame:
    raw = path.read_bytes()
    _check_utf8(path, raw)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    _check_header(path, raw, sep)
    try:
        return pd.read_csv(path, sep=sep, encoding="utf-8-sig", dtype=str,
                           keep_default_na=False, na_values=[""], quoting=csv.QUOTE_MINIMAL)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a well-formed CSV ({exc})") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise DataError(f"{path}: not a readable Parquet file ({exc})") from None
    # labels compare as strings (configs list them as strings); nulls stay null for validation
    return frame.apply(lambda col: col.map(lambda v: v if pd.isna(v) else str(v)))


def _check_utf8(path: Path, raw: bytes) -> None:
    """Name the line and byte of the first non-UTF-8 byte, which pandas would only hint at,
    and of a NUL byte (valid UTF-8, but never text: a binary or truncated file)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DataError(f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at "
                        f"offset {exc.start}); save the file as UTF-8") from None
    if (nul := raw.find(b"\x00")) >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DataError(f"{path}: line {line} contains a NUL byte (offset {nul}); a text CSV "
                        "has none: is this a binary file?")


def _check_header(path: Path, raw: bytes, sep: str) -> None:
    """Two columns of one name would be renamed ``text.1`` by pandas and silently ignored."""
    first = raw.decode("utf-8-sig").splitlines()[:1]
    names = next(csv.reader(first, delimiter=sep), []) if first else []
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise DataError(f"{path}: duplicate column name(s) {dups} in the header; each column "
                        "needs its own name")
