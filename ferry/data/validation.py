"""Data validation with Great Expectations 1.x: the only module of the library importing GX.

Three suites, run on the raw table and on the splits: the shape of text classification data
(columns, no null/blank text, length bounds, labels in the configured set, at least two
classes) or of image data (every file exists and decodes, mode and size within bounds, labels
in the set), class counts (every configured label has a minimum number of rows), and leakage (no
text of train/validation appears in test); a batch to score gets the label-free rules only. A
failure raises DataValidationError listing each failed expectation with example rows; the
HTML + JSON report is written either way so that the flow can log it to MLflow.
"""

from __future__ import annotations

import html
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ferry.config import DataConfig
from ferry.config.data import TaskConfig
from ferry.data import cells
from ferry.data.loading import ROW
from ferry.errors import DataValidationError

EXAMPLES = 5


@dataclass
class Finding:
    """One expectation's outcome, reduced to what a person needs to fix the data.

    ``rule`` names the repair rule (``ferry.data.repair.RULES``) for the expectations whose
    rows the policy can act on; ``action`` is what was done (passed, dropped, kept, failed).
    """

    suite: str
    expectation: str
    column: str | None
    success: bool
    unexpected: int = 0
    examples: list[str] = field(default_factory=list)
    expected: str = ""
    rule: str | None = None
    rows: list[Any] = field(default_factory=list)
    action: str = ""
    hint: str = ""  # what to do when it fails (printed under its examples)


def _rule(expectation: Any, rule: str) -> Any:
    expectation.meta = {"rule": rule}
    return expectation


def _text_suite(cfg: DataConfig) -> list[Any]:
    """The raw table's rules; the ones tagged with a rule are repairable by the policy. Only
    the primary task's label must be present: another task's empty cell trains the others."""
    import great_expectations.expectations as gxe

    from ferry.data.repair import KEY, LABEL_KEY, LABELS_PER_TEXT

    text, label = cfg.text_column, cfg.label_column
    tasks = cells.tasks_of(cfg)
    group = [KEY, LABEL_KEY, *([cfg.split_column] if cfg.split_column else [])]
    suite = [
        gxe.ExpectColumnToExist(column=text),
        *[gxe.ExpectColumnToExist(column=t.column) for t in tasks],
        *([gxe.ExpectColumnToExist(column=cfg.split_column)] if cfg.split_column else []),
        _rule(gxe.ExpectColumnValuesToNotBeNull(column=text), "missing"),
        _rule(gxe.ExpectColumnValuesToMatchRegex(column=text, regex=r"\S"), "missing"),
        _rule(gxe.ExpectColumnValuesToNotBeNull(column=label), "missing"),
        _rule(gxe.ExpectColumnValuesToMatchRegex(column=label, regex=r"\S"), "missing"),
        _rule(gxe.ExpectColumnValuesToBeBetween(column=LABELS_PER_TEXT, max_value=1),
              "conflicts"),
        _rule(gxe.ExpectCompoundColumnsToBeUnique(column_list=group,
                                                  ignore_row_if="any_value_is_missing"),
              "duplicates"),
        gxe.ExpectColumnValueLengthsToBeBetween(column=text, min_value=cfg.min_text_chars),
        _rule(gxe.ExpectColumnValueLengthsToBeBetween(column=text,
                                                      max_value=cfg.max_text_chars), "long"),
    ]
    # empty cells are skipped; a multi-label task's labels are checked one by one instead
    suite += [gxe.ExpectColumnValuesToBeInSet(column=t.column, value_set=list(t.labels))
              for t in tasks if t.labels is not None and not cells.multi(t)]
    return suite


def _scoring_suite(cfg: DataConfig) -> list[Any]:
    """A batch to score: training's rules that need no label (``missing_text``, ``long``;
    images: ``unreadable`` files). No duplicates rule: every input row gets its answer."""
    import great_expectations.expectations as gxe

    if cfg.modality == "image":
        return [_rule(gxe.ExpectColumnValuesToNotBeNull(column=cfg.path_column),
                      "missing_path"),
                _rule(gxe.ExpectColumnValuesToBeInSet(column="problem", value_set=[""]),
                      "unreadable")]
    text = cfg.text_column
    return [gxe.ExpectColumnToExist(column=text),
            _rule(gxe.ExpectColumnValuesToNotBeNull(column=text), "missing_text"),
            _rule(gxe.ExpectColumnValuesToMatchRegex(column=text, regex=r"\S"), "missing_text"),
            _rule(gxe.ExpectColumnValueLengthsToBeBetween(column=text,
                                                          max_value=cfg.max_text_chars), "long")]


def _label_set_suite(tasks: list[TaskConfig]) -> list[Any]:
    """Multi-label tasks: each label of a cell in the task's list (not the joined string)."""
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeInSet(column=t.column, value_set=list(t.labels or []))
            for t in tasks]


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
        *([gxe.ExpectColumnValuesToBeInSet(column=label, value_set=list(cfg.labels))]
          if cfg.labels is not None else []),
    ]


def _count_suite(cfg: DataConfig) -> list[Any]:
    """Per label (given, or found after repairs): enough rows; and at least two labels."""
    import great_expectations.expectations as gxe

    return [gxe.ExpectColumnValuesToBeBetween(column="rows", min_value=cfg.min_class_count),
            gxe.ExpectTableRowCountToBeBetween(min_value=2)]


def _leak_suite(column: str, value: Any, rule: str | None) -> list[Any]:
    import great_expectations.expectations as gxe

    expectation = gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[value])
    return [_rule(expectation, rule) if rule else expectation]


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
    examples = [f"{index} {r.get(index)}: "
                f"{_short(next((v for k, v in r.items() if k != index), ''))}"
                for r in rows[:EXAMPLES]]
    if not res.success and not examples and "observed_value" in out:
        examples = [f"observed {out['observed_value']!r}"]
    if res.exception_info and res.exception_info.get("raised_exception"):
        examples.append(str(res.exception_info.get("exception_message")))
    return Finding(suite, conf.type, conf.kwargs.get("column"), bool(res.success),
                   int(out.get("unexpected_count") or 0), examples, _expected(kwargs),
                   (conf.meta or {}).get("rule"), [r.get(index) for r in rows])


def _short(value: Any) -> str:
    text = repr(value.item() if hasattr(value, "item") else value)
    return text if len(text) <= 80 else text[:77] + "..."


def _expected(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items()
                     if k not in ("result_format", "catch_exceptions", "meta", "mostly"))


def check_table(frame: pd.DataFrame, cfg: DataConfig) -> list[Finding]:
    """Shape and label checks on the raw table (text tables carry ``repair.derive``'s columns).

    Image tables must carry the per-file columns of ``images.inspect`` (problem, mode, size);
    their findings name files rather than rows.
    """
    if cfg.modality == "image":
        findings, _ = _run_suite("image-classification", _image_suite(cfg), frame,
                                 cfg.path_column)
        return findings
    findings, _ = _run_suite("text-classification", _text_suite(cfg), frame, ROW)
    tasks = cells.tasks_of(cfg)
    listed = [t for t in tasks if t.labels is not None and cells.multi(t) and t.column in frame]
    if listed:
        long = pd.concat([cells.exploded(frame, t, ROW) for t in listed], ignore_index=True)
        more, _ = _run_suite("label-sets", _label_set_suite(listed), long, ROW)
        findings += more
    for f in findings:
        if f.expectation == "expect_column_values_to_be_in_set" and not f.success:
            at = next((i for i, t in enumerate(tasks) if t.column == f.column), 0)
            f.hint = (f"fix these rows, or list the label(s) in {_labels_key(cfg, at)}"
                      + (f" (each label of a {tasks[at].separator!r}-separated cell must be "
                         "listed)" if cells.multi(tasks[at]) else ""))
    return findings


def check_batch(frame: pd.DataFrame, cfg: DataConfig) -> list[Finding]:
    """The scoring suite on a batch (images: with ``images.inspect``'s ``problem`` column)."""
    name = "image-scoring" if cfg.modality == "image" else "text-scoring"
    findings, _ = _run_suite(name, _scoring_suite(cfg), frame, ROW)
    return findings


def _labels_key(cfg: DataConfig, at: int) -> str:
    """The config key that lists task ``at``'s labels, for a message's fix."""
    return f"data.tasks[{at}].labels" if cfg.tasks else "data.labels"


def check_counts(frame: pd.DataFrame, cfg: DataConfig) -> list[Finding]:
    """After repairs: every label of every task (the given list, else those found) has enough
    rows, a multi-label task's labels counted one by one; each task has two labels at least."""
    index = ROW if ROW in frame.columns else cfg.path_column
    tasks = cells.tasks_of(cfg)
    findings: list[Finding] = []
    for at, task in enumerate(tasks):
        counts = cells.counts(frame, task) if task.column in frame else {}
        labels = list(task.labels) if task.labels is not None else sorted(counts)
        table = pd.DataFrame({"label": labels, "rows": [counts.get(lbl, 0) for lbl in labels]})
        name = "class-counts" if len(tasks) == 1 else f"class-counts-{task.column}"
        found, _ = _run_suite(name, _count_suite(cfg), table, "label")
        for f in found:  # a rare label is often a typo: say where it is
            f.examples = [ex + _where(frame, task, index, label)
                          for ex, label in zip(f.examples, f.rows, strict=False)]
            if f.success:
                continue
            if f.column is None:  # the table of labels: fewer than two
                f.hint = (f"{task.column!r} has {len(labels)} label(s) {labels}: a classifier "
                          "needs two at least; check the column or the data")
            else:
                f.hint = (f"give each label of {task.column!r} {cfg.min_class_count} rows or "
                          f"more, fix the rows named, or lower data.min_class_count"
                          + ("" if task.labels is None else
                             f" (or drop the label from {_labels_key(cfg, at)})"))
        findings += found
    return findings


def _where(frame: pd.DataFrame, task: TaskConfig, index: str, label: Any) -> str:
    rows = cells.rows_with(frame, task, index, label)
    if not rows or len(rows) > EXAMPLES:
        return ""
    return f" ({index} {', '.join(rows)})"


def check_leakage(parts: dict[str, pd.DataFrame], cfg: DataConfig) -> list[Finding]:
    """Images: no image (by pixel hash) of train or validation may also be in test. Texts:
    per evaluation split, the rows whose text is also a training (or, for test, a validation)
    text, flagged for the leakage rule; either would inflate the metrics."""
    if cfg.modality == "image":
        seen = pd.concat([parts["train"], parts["validation"]])
        test = set(parts["test"]["pixel_hash"].dropna())
        frame = pd.DataFrame({cfg.path_column: seen[cfg.path_column],
                              "also_in_test": seen["pixel_hash"].isin(test)})
        findings, _ = _run_suite("train-test-leakage", _leak_suite("also_in_test", False, None),
                                 frame, cfg.path_column)
        return findings
    from ferry.data.repair import LEAKS

    findings = []
    for name, part in parts.items():
        more, _ = _run_suite(f"{name}-leakage", _leak_suite(LEAKS, 0, "leakage"),
                             part[[ROW, LEAKS]], ROW)
        findings += more
    return findings


def raise_on_failure(findings: list[Finding], source: Path, report: Path,
                     failed_repairs: list[str] = ()) -> None:
    """Stop with one readable message: each failed repair rule with its rows, then each other
    failed expectation with example rows."""
    failed = [f for f in findings if not f.success and not f.rule]
    if not failed and not failed_repairs:
        return
    lines = [f"data validation failed for {source} "
             f"({len(failed) + len(failed_repairs)} problem(s); report: {report}):"]
    lines += [f"  - {line}" for line in failed_repairs]  # with their example lines
    if failed_repairs:
        lines.append("    (data.strict / data.repair.<rule>: fail; set it to drop to repair)")
    for f in failed:
        col = f" on column {f.column!r}" if f.column else ""
        lines.append(f"  - {f.suite}: {f.expectation}{col} failed for {f.unexpected} row(s); "
                     f"expected {f.expected or 'the column to exist'}")
        lines += [f"      {ex}" for ex in f.examples]
        lines += [f"      -> {f.hint}"] if f.hint else []
    raise DataValidationError("\n".join(lines), report=str(report))


def write_report(findings: list[Finding], source: Path, out_dir: Path,
                 repairs: list[Any] = (), notes: list[str] = ()) -> Path:
    """An HTML page (the Data Docs equivalent, offline, self-contained) and a JSON file: every
    expectation, then every repair with all of its rows; ``notes`` (how the split was made)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ok = all(f.success for f in findings) and all(r.action != "failed" for r in repairs)
    (out_dir / "validation.json").write_text(json.dumps(
        {"source": str(source), "success": ok, "results": [f.__dict__ for f in findings],
         "repairs": [{**r.__dict__, "count": r.count} for r in repairs], "notes": list(notes)},
        indent=2, default=str), encoding="utf-8")
    esc = html.escape
    rows = "".join(
        f"<tr class={'ok' if f.success else 'fail'}><td>{esc(f.suite)}</td>"
        f"<td>{esc(f.expectation)}</td><td>{esc(str(f.column or ''))}</td>"
        f"<td>{esc(f.action or ('passed' if f.success else 'FAILED'))}</td><td>{f.unexpected}</td>"
        f"<td>{esc(f.expected)}</td><td>{'<br>'.join(map(esc, f.examples))}</td></tr>"
        for f in findings)
    fixes = "".join(
        f"<tr class={'fail' if r.action == 'failed' else 'ok'}><td>{esc(r.rule)}</td>"
        f"<td>{r.action}</td><td>{r.count}</td><td>{esc(', '.join(map(str, r.rows)))}</td>"
        f"<td>{'<br>'.join(map(esc, r.examples))}</td></tr>" for r in repairs)
    page = (f"<html><head><meta charset='utf-8'><title>Ferry data validation</title><style>"
            "td,th{border:1px solid #ccc;padding:4px}.fail{background:#fdd}.ok{background:#efe}"
            f"</style></head><body><h1>Data validation: {esc(str(source))}</h1>"
            + "".join(f"<p>{esc(n)}</p>" for n in notes) +
            "<h2>Repairs</h2><table><tr><th>rule</th><th>action</th><th>rows</th>"
            f"<th>row numbers</th><th>examples</th></tr>{fixes}</table>"
            "<h2>Expectations</h2>"
            "<table><tr><th>suite</th><th>expectation</th><th>column</th><th>result</th>"
            f"<th>unexpected rows</th><th>expected</th><th>examples</th></tr>{rows}</table>"
            "</body></html>")
    path = out_dir / "validation.html"
    path.write_text(page, encoding="utf-8")
    return path
