"""Label cells per task, as validation, repair, the split and the summaries read them.

``ferry.models.tasks.Task.cells`` owns how a cell becomes labels (a multi-label cell is split
by its separator; an empty cell is no label for that task). The data checks build on it, so a
cell means the same thing when it is validated as when it is trained on.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ferry.config.data import DataConfig, TaskConfig
from ferry.models.tasks import Task


def tasks_of(cfg: DataConfig) -> list[TaskConfig]:
    """Every task of the config. With ``data.label_columns`` the 0/1 columns' names are the
    primary task's labels unless ``data.labels`` lists them: the set is known exactly, and a
    column with too few 1s then fails the class counts instead of silently vanishing."""
    tasks = cfg.task_list()
    if cfg.label_columns and tasks[0].labels is None:
        tasks[0] = tasks[0].model_copy(update={"labels": list(cfg.label_columns)})
    return tasks


def multi(task: TaskConfig) -> bool:
    """A task whose cells hold several labels (it has a separator)."""
    return task.separator is not None


def cells(frame: pd.DataFrame, task: TaskConfig) -> list[list[str] | None]:
    """Each cell of the task's column as its labels (None when empty)."""
    reader = Task(name=task.column, labels=[], multi=multi(task), separator=task.separator)
    return reader.cells(frame[task.column].tolist())


def canonical(frame: pd.DataFrame, task: TaskConfig) -> pd.Series:
    """One comparable value per cell, None when empty: the label, or for a multi-label task
    the sorted set of its labels re-joined (``" b | a"`` and ``"a|b|a"`` are one label set)."""
    sep = task.separator or ""
    values = [None if c is None else sep.join(sorted(set(c))) for c in cells(frame, task)]
    return pd.Series(values, index=frame.index, dtype=object)


def exploded(frame: pd.DataFrame, task: TaskConfig, index: str) -> pd.DataFrame:
    """One row per (row, label) of the task's non-empty cells: ``[index, task.column]``."""
    pairs = [(at, label) for at, cell in zip(frame[index], cells(frame, task), strict=True)
             if cell for label in dict.fromkeys(cell)]
    return pd.DataFrame(pairs, columns=[index, task.column])


def counts(frame: pd.DataFrame, task: TaskConfig) -> dict[str, int]:
    """Rows per label (a multi-label cell counts once for each of its labels)."""
    out: dict[str, int] = {}
    for cell in cells(frame, task):
        for label in dict.fromkeys(cell or []):
            out[label] = out.get(label, 0) + 1
    return out


def rows_with(frame: pd.DataFrame, task: TaskConfig, index: str, label: Any) -> list[str]:
    """The ``index`` values (row numbers, or image paths) of the rows holding ``label``."""
    return [str(at) for at, cell in zip(frame[index], cells(frame, task), strict=True)
            if cell and label in cell]


def first_labels(frame: pd.DataFrame, task: TaskConfig) -> pd.Series:
    """The first label of each cell as written ("" when empty): what a multi-label split can
    stratify on, since label combinations are too many and too rare to."""
    return pd.Series([c[0] if c else "" for c in cells(frame, task)], index=frame.index)
