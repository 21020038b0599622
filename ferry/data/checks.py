"""Validate, repair, split: one labelled table in, validated splits and their receipts out.

The order matters and is the same for every caller (``ferry run``, ``ferry validate``,
``ferry init``): the raw table's suites, the repair policy acting on what they flagged, the
class counts of what is left, the split, then leakage between the splits (repaired too).
Whatever cannot be repaired raises before any split file is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ferry.config import DataConfig
from ferry.config.data import TaskConfig
from ferry.data import cells, repair, splits, validation
from ferry.data.loading import ROW
from ferry.data.repair import Repair
from ferry.errors import DataError


@dataclass
class Checked:
    """The validated splits, the repairs made on the way, and the labels they carry:
    ``labels`` the primary task's, ``task_labels`` every task's (by column; a multi-label
    task's individual labels). ``notes`` say how the split was made."""

    parts: dict[str, pd.DataFrame]
    labels: list[str]
    repairs: list[Repair] = field(default_factory=list)
    report: Path | None = None
    task_labels: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check(frame: pd.DataFrame, cfg: DataConfig, report_dir: Path) -> Checked:
    """Run the suites and the policy; write the report either way; raise on what is left."""
    tasks = cells.tasks_of(cfg)
    if cfg.modality == "text" and _has(frame, cfg):
        frame = repair.derive(frame, cfg.text_column, tasks)
    findings = validation.check_table(frame, cfg)
    repairs: list[Repair] = []
    notes: list[str] = []
    parts = None
    if _passed(findings):
        kept, repairs = _repair_table(frame, findings, cfg)
        if not any(r.action == "failed" for r in repairs):
            parts = _split_and_count(kept, cfg, findings, repairs, notes)
    report = validation.write_report(findings, cfg.path, report_dir, repairs, notes)
    validation.raise_on_failure(findings, cfg.path, report,
                                ["\n      ".join([r.line(), *r.examples[:3]])
                                 for r in repairs if r.action == "failed"])
    assert parts is not None
    found = {t.column: _labels(parts, t, cfg) for t in tasks}
    return Checked(parts, found[cfg.label_column], repairs, report, found, notes)


@dataclass
class CheckedBatch:
    """A batch to score after the scoring suite and the repair policy: the rows to score
    (``_row`` numbers as in the input), the repairs made, and the report."""

    frame: pd.DataFrame
    repairs: list[Repair]
    report: Path


def check_batch(frame: pd.DataFrame, cfg: DataConfig, source: Path,
                report_dir: Path) -> CheckedBatch:
    """A batch to score through the label-free rules of training (``validation.check_batch``)
    and the same repair policy (``data.repair.missing``/``long``, ``data.strict``); the report
    is written either way; what cannot be repaired raises, naming its rows."""
    findings = validation.check_batch(frame, cfg)
    kept, repairs = frame, []
    if _passed(findings):
        flagged: dict[str, set[int]] = {}
        for f in findings:
            if f.rule and not f.success:
                flagged.setdefault(f.rule, set()).update(int(r) for r in f.rows)
        actions = {"missing_text": cfg.policy("missing"), "missing_path": cfg.policy("missing"),
                   "long": cfg.policy("long"),
                   "unreadable": "fail" if cfg.strict else "drop"}
        column = cfg.text_column if cfg.modality == "text" else cfg.path_column
        kept, repairs = repair.apply_batch(frame, flagged, actions, column)
        _mark(findings, repairs)
    report = validation.write_report(findings, source, report_dir, repairs,
                                     ["a batch to score: label-free rules, repeats kept"])
    validation.raise_on_failure(findings, source, report,
                                ["\n      ".join([r.line(), *r.examples[:3]])
                                 for r in repairs if r.action == "failed"])
    if kept.empty:
        raise DataError(f"{source}: no rows left to score after repairs ("
                        + "; ".join(r.line() for r in repairs) + f"); see {report}")
    return CheckedBatch(kept, repairs, report)


def _has(frame: pd.DataFrame, cfg: DataConfig) -> bool:
    return {cfg.text_column, *(t.column for t in cfg.task_list())} <= set(frame.columns)


def _passed(findings: list[validation.Finding]) -> bool:
    """Nothing failed but what a repair rule may act on."""
    return all(f.success or f.rule for f in findings)


def _repair_table(frame: pd.DataFrame, findings: list[validation.Finding],
                  cfg: DataConfig) -> tuple[pd.DataFrame, list[Repair]]:
    """The policy on the raw table's flagged rows (images: nothing to repair)."""
    if cfg.modality == "image":
        return frame, []
    flagged: dict[str, set[int]] = {}
    for f in findings:
        if f.rule and not f.success:
            flagged.setdefault(f.rule, set()).update(int(r) for r in f.rows)
    group = [repair.KEY, repair.LABEL_KEY, *([cfg.split_column] if cfg.split_column else [])]
    kept, repairs = repair.apply(frame, flagged, _actions(cfg), group, cfg.text_column)
    _mark(findings, repairs)
    if kept.empty:
        raise DataError(f"{cfg.path}: no rows left after repairs ("
                        + "; ".join(f"{r.count} {r.rule}" for r in repairs)
                        + "); see the report, or fix the file")
    return kept.drop(columns=[repair.KEY, repair.LABEL_KEY, repair.LABELS_PER_TEXT]), repairs


def _actions(cfg: DataConfig) -> dict[str, str]:
    return {rule: cfg.policy(rule) for rule in repair.RULES}


def _mark(findings: list[validation.Finding], repairs: list[Repair]) -> None:
    """A flagged expectation whose rule was applied counts as passed, with what was done."""
    done = {r.rule: r for r in repairs}
    for f in findings:
        if f.rule and not f.success and f.rule in done:
            r = done[f.rule]
            f.success, f.action = r.action != "failed", f"{r.action} ({r.count} rows)"


def _split_and_count(kept: pd.DataFrame, cfg: DataConfig, findings: list[validation.Finding],
                     repairs: list[Repair], notes: list[str]) -> dict[str, pd.DataFrame] | None:
    """Class counts on what is left, the split (how: into ``notes``), then the leakage rule
    on the splits."""
    findings += validation.check_counts(kept, cfg)
    if not _passed(findings):
        return None
    parts, how = splits.split_with_note(kept, cfg)
    notes.append(how)
    if cfg.modality == "image":
        findings += validation.check_leakage(parts, cfg)
        return parts
    marked = repair.leakage(parts, cfg.text_column)
    leaks = validation.check_leakage(marked, cfg)
    findings += leaks
    where = {int(row): (name, text) for name, part in parts.items()
             for row, text in zip(part[ROW], part[cfg.text_column], strict=True)}
    rows = {int(r) for f in leaks if not f.success for r in f.rows}
    if rows:
        action = {"drop": "dropped", "fail": "failed"}[cfg.policy("leakage")]
        examples = [e for name, part in marked.items()
                    for e in repair.leak_examples(part, name, rows, where)]
        repairs.append(Repair("leakage", action, sorted(rows), examples[:5]))
        _mark(findings, repairs)
        if action == "dropped":
            parts = {name: part[~part[ROW].astype(int).isin(rows)] for name, part in
                     parts.items()}
    return parts


def _labels(parts: dict[str, pd.DataFrame], task: TaskConfig, cfg: DataConfig) -> list[str]:
    """The task's given label list, else the training split's labels (sorted; a multi-label
    task's individual labels); an evaluation split holding a label training never saw cannot
    be scored."""
    if task.labels is not None:
        return list(task.labels)
    found = sorted(cells.counts(parts["train"], task))
    for name in ("validation", "test"):
        extra = sorted(set(cells.counts(parts[name], task)) - set(found))
        if extra:
            where = "data.labels" if not cfg.tasks else "the task's labels (data.tasks)"
            of = "" if len(cfg.task_list()) == 1 else f" of task {task.column!r}"
            raise DataError(f"{cfg.path}: label(s) {extra}{of} appear in the {name} split but "
                            f"not in train; give them training rows or list {where}")
    return found
