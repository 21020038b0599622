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
from ferry.data import repair, splits, validation
from ferry.data.loading import ROW
from ferry.data.repair import Repair
from ferry.errors import DataError


@dataclass
class Checked:
    """The validated splits, the repairs made on the way, and the labels they carry."""

    parts: dict[str, pd.DataFrame]
    labels: list[str]
    repairs: list[Repair] = field(default_factory=list)
    report: Path | None = None


def check(frame: pd.DataFrame, cfg: DataConfig, report_dir: Path) -> Checked:
    """Run the suites and the policy; write the report either way; raise on what is left."""
    if cfg.modality == "text" and _has(frame, cfg):
        frame = repair.derive(frame, cfg.text_column, cfg.label_column)
    findings = validation.check_table(frame, cfg)
    repairs: list[Repair] = []
    parts = None
    if _passed(findings):
        kept, repairs = _repair_table(frame, findings, cfg)
        if not any(r.action == "failed" for r in repairs):
            parts = _split_and_count(kept, cfg, findings, repairs)
    report = validation.write_report(findings, cfg.path, report_dir, repairs)
    validation.raise_on_failure(findings, cfg.path, report,
                                ["\n      ".join([r.line(), *r.examples[:3]])
                                 for r in repairs if r.action == "failed"])
    assert parts is not None
    return Checked(parts, _labels(parts, cfg), repairs, report)


def _has(frame: pd.DataFrame, cfg: DataConfig) -> bool:
    return {cfg.text_column, cfg.label_column} <= set(frame.columns)


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
    group = [repair.KEY, cfg.label_column, *([cfg.split_column] if cfg.split_column else [])]
    kept, repairs = repair.apply(frame, flagged, _actions(cfg), group, cfg.text_column)
    _mark(findings, repairs)
    if kept.empty:
        raise DataError(f"{cfg.path}: no rows left after repairs ("
                        + "; ".join(f"{r.count} {r.rule}" for r in repairs)
                        + "); see the report, or fix the file")
    return kept.drop(columns=[repair.KEY, repair.LABELS_PER_TEXT]), repairs


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
                     repairs: list[Repair]) -> dict[str, pd.DataFrame] | None:
    """Class counts on what is left, the split, then the leakage rule on the splits."""
    findings += validation.check_counts(kept, cfg)
    if not _passed(findings):
        return None
    parts = splits.split_frame(kept, cfg)
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


def _labels(parts: dict[str, pd.DataFrame], cfg: DataConfig) -> list[str]:
    """The given label list, else the training split's labels (sorted); an evaluation split
    holding a label training never saw cannot be scored."""
    if cfg.labels is not None:
        return list(cfg.labels)
    found = sorted(parts["train"][cfg.label_column].unique())
    for name in ("validation", "test"):
        extra = sorted(set(parts[name][cfg.label_column]) - set(found))
        if extra:
            raise DataError(f"{cfg.path}: label(s) {extra} appear in the {name} split but not "
                            "in train; give them training rows or list data.labels")
    return found
