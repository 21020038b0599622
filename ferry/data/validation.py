"""Data validation with Great Expectations 1.x: the only module of the library importing GX.

Three suites, run on the raw table and on the splits: the shape of text classification data
(columns, no null/blank text, length bounds, labels in the configured set, at least two
classes) or of image data (every file exists and decodes, mode and size within bounds, labels
in the set), class counts (every configured label has a minimum number of rows), and leakage (no
text of train/validation appears in test). A failure raises DataValidationError listing each
failed expectation with example rows; the HTML + JSON report is written either way so that the
flow can log it to MLflow.
"""

from __future__ import annotations

import html
import logging
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ferry.config import DataConfig
from ferry.data.loading import ROW
from ferry.errors import DataValidationError

EXAMPLES = 5


@dataclass
class Finding:
    """One expectation's outcome, reduced to what a person needs to fix the data."""

    suite: str
    expectation: str
    column: str | None
    success: bool
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)
    expected: str = ""


def _unique(gxe, text: str, split: str | None):
    """No text twice within a split (a duplicate weighs double in training or scoring); the
    same text in train and test is reported by the leakage check, which says so."""
    if split:
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=[split, text])
    return gxe.ExpectColumnValuesToBeUnique(column=text)


def _text_suite(cfg: DataConfig) -> list[Any]:
    import great_expectations.expectations as gxe

    text, label = cfg.text_column, cfg.label_column
    return [
        gxe.ExpectColumnToExist(column=text),
        gxe.ExpectColumnToExist(column=label),
        gxe.ExpectColumnValuesToNotBeNull(column=text),
        _unique(gxe, text, cfg.split_column),
        gxe.ExpectColumnValuesToMatchRegex(column=text, regex=r"\S"),
        gxe.ExpectColumnValueLengthsToBeBetween(column=text, min_value=cfg.min_text_chars,
                                                max_value=cfg.max_text_chars),
        gxe.ExpectColumnValuesToNotBeNull(column=label),
        gxe.ExpectColumnValuesToBeInSet(column=label, value_set=list(cfg.labels)),
        gxe.ExpectColumnUniqueValueCountToBeBetween(column=label, min_value=2),
    ]


def _image_suite(cfg: DataConfig) -> list[Any]:
    import great_expectations.expectations as gxe

    img, label = cfg.image, cfg.label_column
    return [
        gxe.ExpectColumnValuesToNotBeNull(column=cfg.path_column),
        gxe.ExpectColumnValuesToBeUnique(column=cfg.path_column),
        gxe.ExpectColumnValuesToBeInSet(column="problem", value_set=[""]),
        gxe.ExpectColumnValuesToBeInSet(column="mode", value_set=list(img.modes)),
        gxe.ExpectColumnValuesToBeBetween(column="width", min_value=img.min_side,
                                          max_value=img.max_side),
        gxe.ExpectColumnValuesToBeBetween(column="height", min_value=img.min_side,
                                          max_value=img.max_side),
        gxe.ExpectColumnValuesToNotBeNull(column=label),
        gxe.ExpectColumnValuesToBeInSet(column=label, value_set=list(cfg.labels)),
        gxe.ExpectColumnUniqueValueCountToBeBetween(column=label, min_value=2),
    ]


def _count_suite(cfg: DataConfig) -> list[Any]:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=cfg.min_class_count)]


def _leak_suite() -> list[Any]:
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeInSet(column="also_in_test", value_set=[False])]


def _run_suite(name: str, expectations: list[Any], frame: pd.DataFrame,
               index: str) -> tuple[list[Finding], dict]:
    """Run one suite on a DataFrame in an ephemeral GX context; no files, no network."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    for logger in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(logger).setLevel(logging.WARNING)  # "Created temporary directory..."
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (ctx.data_sources.add_pandas(f"{name}-source")
                 .add_dataframe_asset(name).add_batch_definition_whole_dataframe("all"))
    suite = ctx.suites.add(gx.ExpectationSuite(name=name))
    for expectation in expectations:
        suite.add_expectation(expectation)
    definition = ctx.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}-check", data=batch_def, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame}, result_format={
        "result_format": "COMPLETE", "unexpected_index_column_names": [index]})
    return [_finding(name, r, index) for r in result.results], result.describe_dict()


def _finding(suite: str, res: Any, index: str) -> Finding:
    conf = res.expectation_config
    kwargs = {k: v for k, v in conf.kwargs.items() if k not in ("batch_id", "column")}
    out = res.result or {}
    rows = out.get("unexpected_index_list") or []
    examples = [f"{index} {r.get(index)}: {_short(next((v for k, v in r.items() if k != index), ''))}"
                for r in rows[:EXAMPLES]]
    if not res.success and not examples and "observed_value" in out:
        examples = [f"observed {out['observed_value']!r}"]
    if res.exception_info and res.exception_info.get("raised_exception"):
        examples.append(str(res.exception_info.get("exception_message")))
    return Finding(suite, conf.type, conf.kwargs.get("column"), bool(res.success),
                   int(out.get("unexpected_count") or 0), examples, _expected(kwargs))


def _short(value: Any) -> str:
    text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()
                     if k not in ("result_format", "catch_exceptions", "meta", "mostly"))


def check_table(frame: pd.DataFrame, cfg: DataConfig) -> list[Finding]:
    """Shape and label checks on the raw table, plus per-class counts.

    Image tables must carry the per-file columns of ``images.inspect`` (problem, mode, size);
    their findings name files rather than rows.
    """
    if cfg.modality == "image":
        findings, _ = _run_suite("image-classification", _image_suite(cfg), frame,
                                 cfg.path_column)
    else:
        findings, _ = _run_suite("text-classification", _text_suite(cfg), frame, ROW)
    if cfg.label_column in frame.columns:
        counts = frame[cfg.label_column].value_counts()
        table = pd.DataFrame({"label": list(cfg.labels),
                              "rows": [int(counts.get(lbl, 0)) for lbl in cfg.labels]})
        more, _ = _run_suite("class-counts", _count_suite(cfg), table, "label")
        findings += more
    return findings


def check_leakage(parts: dict[str, pd.DataFrame], cfg: DataConfig) -> list[Finding]:
    """No text (or image, by pixel hash) of train or validation may also appear in test: it
    would inflate test metrics."""
    seen = pd.concat([parts["train"], parts["validation"]])
    if cfg.modality == "image":
        test = set(parts["test"]["pixel_hash"].dropna())
        frame = pd.DataFrame({cfg.path_column: seen[cfg.path_column],
                              "also_in_test": seen["pixel_hash"].isin(test)})
        index = cfg.path_column
    else:
        test = set(parts["test"][cfg.text_column].str.strip())
        frame = pd.DataFrame({ROW: seen[ROW].astype(int), cfg.text_column: seen[cfg.text_column],
                              "also_in_test": seen[cfg.text_column].str.strip().isin(test)})
        index = ROW
    findings, _ = _run_suite("train-test-leakage", _leak_suite(), frame, index)
    return findings


def raise_on_failure(findings: list[Finding], source: Path, report: Path) -> None:
    """Stop with one readable message listing each failed expectation and example rows."""
    failed = [f for f in findings if not f.success]
    if not failed:
        return
    lines = [f"data validation failed for {source} ({len(failed)} expectation(s); "
             f"report: {report}):"]
    for f in failed:
        col = f" on column {f.column!r}" if f.column else ""
        lines.append(f"  - {f.suite}: {f.expectation}{col} failed for {f.unexpected} row(s); "
                     f"expected {f.expected or 'the column to exist'}")
        lines += [f"      {ex}" for ex in f.examples]
    raise DataValidationError("\n".join(lines), report=str(report))


def write_report(findings: list[Finding], source: Path, out_dir: Path) -> Path:
    """An HTML page (the Data Docs equivalent, offline, self-contained) and a JSON file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "validation.json").write_text(json.dumps(
        {"source": str(source), "success": all(f.success for f in findings),
         "results": [f.__dict__ for f in findings]}, indent=2, default=str), encoding="utf-8")
    rows = "".join(
        f"<tr class={'ok' if f.success else 'fail'}><td>{html.escape(f.suite)}</td>"
        f"<td>{html.escape(f.expectation)}</td><td>{html.escape(str(f.column or ''))}</td>"
        f"<td>{'passed' if f.success else 'FAILED'}</td><td>{f.unexpected}</td>"
        f"<td>{html.escape(f.expected)}</td><td>{'<br>'.join(map(html.escape, f.examples))}</td></tr>"
        for f in findings)
    page = (f"<html><head><meta charset='utf-8'><title>Ferry data validation</title><style>"
            "td,th{border:1px solid #ccc;padding:4px}.fail{background:#fdd}.ok{background:#efe}"
            f"</style></head><body><h1>Data validation: {html.escape(str(source))}</h1>"
            "<table><tr><th>suite</th><th>expectation</th><th>column</th><th>result</th>"
            f"<th>unexpected rows</th><th>expected</th><th>examples</th></tr>{rows}</table>"
            "</body></html>")
    path = out_dir / "validation.html"
    path.write_text(page, encoding="utf-8")
    return path
