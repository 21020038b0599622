"""The repair policy: what happens to the rows that validation's suites flag.

Great Expectations finds (``validation``); this module decides. Real files carry rows that are
messy but usable: an empty text, the same short utterance twice, one text under two labels, a
test text that is also a training text. Each rule has an action in ``data.repair`` (``drop``
and report, or ``fail``; ``data.strict`` makes every rule fail). Every repair is a ``Repair``
record naming its rows, so the report, the run's metrics and the console all say the same
thing, and a strict run fails naming the very rows a lenient one drops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandas as pd

from ferry.config.data import TaskConfig
from ferry.data import cells
from ferry.data.loading import ROW

KEY = "_key"  # the text with whitespace runs collapsed: "Yes. " and "Yes." are one text
LABELS_PER_TEXT = "_labels_per_text"
LABEL_KEY = "_label_key"  # the row's labels: one task's, or (several tasks) all as JSON
LEAKS = "_also_in_train"
RULES = {
    "missing": "an empty or missing text or label",  # (of the primary task)
    "conflicts": "the same text under different labels (all its rows)",
    "duplicates": "the same text and label again (after whitespace normalisation)",
    "leakage": "a validation/test text that is also a training text",
    "long": "a text longer than data.max_text_chars (kept: the tokenizer cuts it)",
}
# Rules of a batch to score only (``apply_batch``): no labels there. Their actions come from
# data.repair.missing (``missing_*``) and data.strict (``unreadable``: fail, else drop).
BATCH_RULES = {"missing_text": "an empty or missing text",
               "missing_path": "an empty image path",
               "unreadable": "an image file that is missing or does not decode"}
ROWS_SHOWN = 20


@dataclass
class Repair:
    """One rule's outcome on one file: the rows it touched and what was done with them."""

    rule: str
    action: str  # dropped | kept | failed
    rows: list[int] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows)

    def line(self) -> str:
        """The one console line for this rule (the report lists every row)."""
        verb = {"dropped": "dropped", "kept": "kept", "failed": "found"}[self.action]
        what = RULES.get(self.rule) or BATCH_RULES[self.rule]
        return f"{verb} {self.count} row(s) with {what}: {row_list(self.rows)}"


def row_list(rows: list[int]) -> str:
    """``rows 3, 8, 12 and 46 more``: the first rows of a repair, in file order."""
    shown = ", ".join(str(r) for r in rows[:ROWS_SHOWN])
    more = f" and {len(rows) - ROWS_SHOWN} more" if len(rows) > ROWS_SHOWN else ""
    return f"row{'s' if len(rows) > 1 else ''} {shown}{more}"


def normalise(value: object) -> str | None:
    """Collapse whitespace runs and trim; None for a missing or blank value."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    text = " ".join(str(value).split())
    return text or None


def derive(frame: pd.DataFrame, text: str, tasks: list[TaskConfig]) -> pd.DataFrame:
    """Add the columns the suites check: the normalised text, the row's labels over every task
    (``LABEL_KEY``: what a duplicate repeats) and, per text, how many different labels it
    carries in its most contradictory task (``LABELS_PER_TEXT``: above 1 is a conflict).

    A blank cell becomes empty (no label for that task; the primary's is then missing). An
    empty cell of another task contradicts nothing: ``("Yes.", R, TRUMP)`` and ``("Yes.", R,
    -)`` are no conflict. Rows with a missing text or primary label count for neither rule.
    """
    out = frame.copy()
    out[KEY] = out[text].map(normalise)
    keys = {t.column: cells.canonical(out, t) for t in tasks}
    for column, key in keys.items():
        out[column] = out[column].where(key.notna(), None)
    primary = keys[tasks[0].column]
    usable = out[KEY].notna() & primary.notna()
    if len(tasks) == 1:
        out[LABEL_KEY] = primary
    else:
        tuples = [json.dumps(labels) for labels in zip(*keys.values(), strict=True)]
        out[LABEL_KEY] = pd.Series(tuples, index=out.index, dtype=object).where(primary.notna())
    per_task = [pd.Series(1, index=out.index)]
    for key in keys.values():
        ok = usable & key.notna()
        per_task.append(out[KEY].map(key[ok].groupby(out.loc[ok, KEY]).nunique()).fillna(1))
    out[LABELS_PER_TEXT] = pd.concat(per_task, axis=1).max(axis=1).astype(int)
    return out


def apply(frame: pd.DataFrame, flagged: dict[str, set[int]], actions: dict[str, str],
          group: list[str], text: str) -> tuple[pd.DataFrame, list[Repair]]:
    """Drop (or keep, or fail on) the flagged rows rule by rule, in the order of ``RULES``.

    Duplicates keep the first row of each ``group`` (normalised text, labels and split);
    conflicts drop every row of the text, since no one of its labels can be trusted.
    """
    repairs, keep = [], pd.Series(True, index=frame.index)
    rows = frame[ROW].astype(int)
    for rule in actions:  # in the order of RULES (then BATCH_RULES)
        hit = rows.isin(flagged.get(rule, set())) & keep
        if rule == "duplicates":
            hit &= frame.duplicated(subset=group, keep="first")
        if not hit.any():
            continue
        action = {"drop": "dropped", "keep": "kept", "fail": "failed"}[actions[rule]]
        repairs.append(Repair(rule, action, sorted(rows[hit].tolist()),
                              _examples(frame[hit], frame[keep & ~hit], rule, text)))
        if action != "kept":  # a failed rule's rows are not counted again by later rules
            keep &= ~hit
    return frame[keep], repairs


def apply_batch(frame: pd.DataFrame, flagged: dict[str, set[int]], actions: dict[str, str],
                column: str) -> tuple[pd.DataFrame, list[Repair]]:
    """The policy on a batch to score (``actions``: its rules only, e.g. ``missing_text``,
    ``long``, ``unreadable``): the same ``Repair`` records as training, so the console, the
    report and the scoring run say the same thing. Repeated rows are all scored."""
    keyed = frame.assign(**{KEY: frame[column].map(normalise)})
    kept, repairs = apply(keyed, flagged, actions, [KEY], column)
    return kept.drop(columns=[KEY]), repairs


def _examples(hit: pd.DataFrame, kept: pd.DataFrame, rule: str, text: str) -> list[str]:
    """A few readable rows as stored; a duplicate names the row it repeats."""
    first = kept.drop_duplicates(KEY).set_index(KEY)[ROW]
    out = []
    for _, row in hit.head(5).iterrows():
        same = first.get(row[KEY]) if rule == "duplicates" and row[KEY] is not None else None
        out.append(f"row {row[ROW]}: {_short(row[text])}"
                   + (f" (= row {same})" if same is not None else ""))
    return out


def leakage(parts: dict[str, pd.DataFrame], text: str) -> dict[str, pd.DataFrame]:
    """Validation and test rows with the ``LEAKS`` column: the training row (or, for a test
    row, the validation row) holding the same normalised text, else 0."""
    seen: dict[str, int] = {}
    out = {}
    for name in ("train", "validation", "test"):
        part = parts[name].copy()
        keys = part[text].map(normalise)
        if name != "train":
            part[LEAKS] = keys.map(lambda k: seen.get(k, 0)).astype(int)
            part[KEY] = keys
            out[name] = part
        for key, row in zip(keys, part[ROW].astype(int), strict=True):
            seen.setdefault(key, row)
    return out


def leak_examples(part: pd.DataFrame, name: str, rows: set[int],
                  where: dict[int, tuple[str, str]]) -> list[str]:
    """``test row 623 'Thank you.' = train row 88 'Thank you. '``: both texts, as stored
    (``where``: file row -> its split and text)."""
    hit = part[part[ROW].astype(int).isin(rows)].head(5)
    out = []
    for _, r in hit.iterrows():
        split, other = where.get(int(r[LEAKS]), ("?", ""))
        out.append(f"{name} row {r[ROW]} {_short(where[int(r[ROW])][1])} = {split} row "
                   f"{r[LEAKS]} {_short(other)}")
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
