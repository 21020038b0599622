"""Read a user's labelled table with errors that point at the file, line and column.

Formats: CSV, TSV, Parquet and JSON Lines (``.jsonl``/``.ndjson``, one object per line), the
text ones optionally compressed (``.csv.gz``, ``.tsv.bz2``, ...): a team's file is read as it
comes, without a conversion step whose bugs would be invisible in the receipt.

Rows are numbered from 1 (the first data row, header excluded) in every message and report,
in a ``_row`` column that travels with the frame through validation and splitting.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import io
import json
import lzma
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ferry.errors import DataError

if TYPE_CHECKING:
    from ferry.config import DataConfig

ROW = "_row"
COMPRESSIONS = {".gz": gzip.decompress, ".bz2": bz2.decompress, ".xz": lzma.decompress}
FORMATS = {".csv": "csv", ".txt": "csv", ".tsv": "tsv", ".parquet": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}
EXPECTED = ".csv, .tsv, .parquet or .jsonl (text formats also as .gz, .bz2 or .xz)"
# Which `ferry init` flag sets a config key (the fix a missing-column message suggests).
INIT_FLAGS = {"data.text_column": "--text", "data.label_column": "--label",
              "data.split_column": "--split"}


def table_format(path: Path) -> tuple[str, str | None]:
    """(format, compression suffix) from the file name: ``x.csv.gz`` -> ('csv', '.gz').

    A bare ``x.gz`` is read as CSV (a copy made under a temporary name keeps only the last
    suffix); an unknown suffix is a DataError naming the formats Ferry reads.
    """
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    inner = suffixes[-1] if suffixes else ""
    kind = FORMATS.get(inner, "csv" if compression and not inner else None)
    if kind is None or (compression and kind == "parquet"):
        raise DataError(f"{path}: unsupported file type {''.join(path.suffixes)!r}; "
                        f"expected {EXPECTED}")
    return kind, compression


def read_table(path: Path, columns: Sequence[str] | Mapping[str, str],
               strip: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read ``path`` and check that ``columns`` exist; texts stay strings, the ``strip``
    columns (labels) lose surrounding whitespace (``" fresh "`` is the label ``fresh``).

    ``columns`` may map each column to the config key that names it (``{"body":
    "data.text_column"}``) so that a missing column's message says which key to change.
    """
    if not path.exists():
        raise DataError(f"data file not found: {path} (build it with `ferry data build` or set "
                        "data.path to your CSV/Parquet/JSONL file)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a CSV or Parquet file (or TSV or "
                        "JSONL; an image folder needs data.modality: image)")
    kind, compression = table_format(path)
    if kind == "parquet":
        frame = _read_parquet(path)
    else:
        raw = _read_bytes(path, compression)
        frame = _read_jsonl(path, raw) if kind == "jsonl" else \
            _read_csv(path, raw, "\t" if kind == "tsv" else ",")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        keys = columns if isinstance(columns, Mapping) else {}
        raise DataError(missing_columns_message(path, missing, list(frame.columns), keys))
    if frame.empty:
        raise DataError(f"{path}: the file has a header but no data rows")
    for column in strip:
        frame[column] = frame[column].map(lambda v: v.strip() if isinstance(v, str) else v)
    frame.insert(0, ROW, range(1, len(frame) + 1))
    return frame


def read_labelled(path: Path, data: DataConfig) -> pd.DataFrame:
    """The labelled text table ``data`` describes: its text and every task's label column
    (label cells stripped), with ``data.label_columns`` (several 0/1 columns) joined into
    ``data.label_column`` here, once, so that every reader sees the same multi-label cells."""
    columns = {data.text_column: "data.text_column"}
    if data.label_columns:
        columns |= {c: "data.label_columns" for c in data.label_columns}
    else:
        columns |= {t.column: f"data.tasks[{i}].column" if data.tasks else "data.label_column"
                    for i, t in enumerate(data.task_list())}
    labels = tuple(c for c, key in columns.items() if key != "data.text_column")
    frame = read_table(path, columns, strip=labels)
    if data.label_columns:
        frame = join_label_columns(frame, path, list(data.label_columns), data.label_column,
                                   data.label_separator or "|")
    return frame


FLAGS = {"1": True, "1.0": True, "true": True, "0": False, "0.0": False, "false": False}


def join_label_columns(frame: pd.DataFrame, path: Path, columns: list[str], target: str,
                       separator: str) -> pd.DataFrame:
    """Multi-label as several 0/1 columns -> one cell per row: the names of the columns that
    are 1, joined by ``separator`` in ``columns`` order (all 0: an empty cell, a missing
    label). A cell that is not 0/1 stops the read naming its row and column."""
    if target in frame.columns:
        raise DataError(f"{path}: data.label_columns are joined into data.label_column "
                        f"{target!r}, but the file already has a column {target!r}; set "
                        "data.label_column to a name the file does not use (e.g. labels)")
    joined = [name for name in columns if separator in name]
    if joined:
        raise DataError(f"{path}: label column name(s) {joined} contain the separator "
                        f"{separator!r}; set data.label_separator to a character they lack")
    flags = {}
    for name in columns:
        flags[name] = frame[name].map(_flag)
        bad = frame.loc[flags[name].isna(), [ROW, name]]
        if not bad.empty:
            value = bad.iloc[0][name]
            shown = "an empty cell" if pd.isna(value) else f"value {value!r}"
            more = f" (and {len(bad) - 1} more row(s))" if len(bad) > 1 else ""
            raise DataError(f"{path}: row {bad.iloc[0][ROW]}, column {name!r}: {shown}"
                            f"{more}; expected 0 or 1 (data.label_columns "
                            "are 0/1 columns, 1 = the row has that label). Fix the cell, or "
                            "remove the column from data.label_columns")
    out = frame.copy()
    out[target] = [separator.join(n for n in columns if flags[n].iat[i]) or None
                   for i in range(len(frame))]
    return out


def _flag(value: object) -> bool | None:
    """A 0/1 cell as a bool (Parquet's 1.0 and True too); None for anything else."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    return FLAGS.get(str(value).strip().lower())


def closest(name: str, names: Sequence[str]) -> str | None:
    """The most similar of ``names`` (difflib, case-insensitive), or None if none is close."""
    lowered = {n.lower(): n for n in names}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


def missing_columns_message(path: Path, missing: list[str], found: list[str],
                            keys: Mapping[str, str]) -> str:
    """``x.csv: missing column(s) ['txt']; did you mean 'text'? found [...]. Set
    data.text_column ...``: the closest names and the key (or init flag) that fixes it."""
    guesses = {c: g for c in missing if (g := closest(c, found))}
    if len(missing) == 1 and guesses:
        mean = f"; did you mean {guesses[missing[0]]!r}?"
    else:
        mean = ("; did you mean " + ", ".join(f"{g!r} for {c!r}" for c, g in guesses.items())
                + "?") if guesses else ";"
    named = f"{missing}{mean}"
    set_keys = [keys[c] for c in missing if c in keys]
    flags = [INIT_FLAGS[k] for k in set_keys if k in INIT_FLAGS]
    if set_keys:
        hint = f"Set {', '.join(set_keys)} to the right name" + (
            f" (or pass {', '.join(flags)} to ferry init)" if flags else "") + "."
    else:
        hint = ("Set data.text_column / data.label_column (data.path_column for images) to "
                "the right names.")
    return f"{path}: missing column(s) {named} found {found}. {hint}"


def _read_bytes(path: Path, compression: str | None) -> bytes:
    raw = path.read_bytes()
    if compression is None:
        return raw
    try:
        return COMPRESSIONS[compression](raw)
    except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
        raise DataError(f"{path}: not a readable {compression} file ({exc}); is it "
                        "truncated, or named for a compression it does not use?") from None


def _read_csv(path: Path, raw: bytes, sep: str) -> pd.DataFrame:
    _check_utf8(path, raw)
    _check_header(path, raw, sep)
    try:
        return pd.read_csv(io.BytesIO(raw), sep=sep, encoding="utf-8-sig", dtype=str,
                           keep_default_na=False, na_values=[""], quoting=csv.QUOTE_MINIMAL)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty; expected a header row and data rows") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a well-formed CSV ({exc})") from None


def _read_jsonl(path: Path, raw: bytes) -> pd.DataFrame:
    """One JSON object per line (blank lines skipped); values become strings like a CSV's
    cells (labels compare as strings), nested values their JSON text, nulls stay null."""
    _check_utf8(path, raw)
    records = []
    for number, line in enumerate(raw.decode("utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {number} is not valid JSON ({exc.msg} at column "
                            f"{exc.colno}); expected one JSON object per line") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}: line {number} is a JSON {type(record).__name__}, "
                            "expected an object such as {\"text\": \"...\", \"label\": \"...\"}")
        records.append({k: _cell(v) for k, v in record.items()})
    if not records:
        raise DataError(f"{path}: the file is empty; expected one JSON object per line")
    return pd.DataFrame.from_records(records)


def _cell(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return value if isinstance(value, str) else str(value)


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
