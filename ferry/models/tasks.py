"""What a model predicts: one or several tasks, each single-label or multi-label.

One owner for the mapping between label cells and the head's outputs, read alike by training
(targets), evaluation (per-task metrics), promotion and every predict path:

- The head is one linear layer whose outputs are cut into consecutive slices, one per task
  (each slice's rows depend only on its own weights: N independent heads, one matmul).
- Targets are integers. The classic single task keeps one index per row (shape ``[N]``), so
  its caches and models stay as they were. Otherwise every row has ``columns`` targets: a
  single-label task takes one (the class index, ``MISSING`` when the cell is empty), a
  multi-label task one per label (1/0, all ``MISSING`` when the cell is empty).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel

MISSING = -1


class Task(BaseModel):
    """One predicted column: its labels, multi-label or not, its loss weight, (multi-label)
    the per-label decision thresholds tuned on validation and (single-label) the softmax
    temperature fitted on validation (``ferry.evaluation.calibration``): 1.0 is the raw
    softmax, as every model exported before calibration existed reads."""

    name: str
    labels: list[str]
    multi: bool = False
    separator: str | None = None
    weight: float = 1.0
    thresholds: list[float] | None = None
    temperature: float = 1.0

    def cells(self, values: list[Any]) -> list[list[str] | None]:
        """Each cell as its list of labels (None when empty)."""
        out: list[list[str] | None] = []
        for v in values:
            text = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
            if not text:
                out.append(None)
            elif self.multi:
                out.append([p.strip() for p in text.split(self.separator) if p.strip()])
            else:
                out.append([text])
        return out


@dataclass
class Layout:
    """The tasks of one model and where each sits in the head's outputs and the targets."""

    tasks: list[Task]
    learned_weights: bool = False
    _starts: list[int] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._starts = list(np.cumsum([0] + [len(t.labels) for t in self.tasks])[:-1])

    @classmethod
    def of(cls, data, learned: bool = False) -> Layout:
        """From a ``DataConfig`` whose labels are resolved (``Prepared.bind``)."""
        tasks = []
        for t in data.task_list():
            if t.labels is None:
                raise ValueError(f"labels of task {t.column!r} are not resolved yet")
            tasks.append(Task(name=t.column, labels=list(t.labels), multi=t.separator is not None,
                              separator=t.separator, weight=t.weight))
        return cls(tasks, learned and len(tasks) > 1)

    @property
    def classic(self) -> bool:
        """One single-label task: targets are one index per row, metrics unprefixed."""
        return len(self.tasks) == 1 and not self.tasks[0].multi

    @property
    def width(self) -> int:
        """The head's number of outputs."""
        return sum(len(t.labels) for t in self.tasks)

    def logits_of(self, i: int) -> slice:
        """The head outputs of task ``i``."""
        return slice(self._starts[i], self._starts[i] + len(self.tasks[i].labels))

    def targets_of(self, i: int) -> slice:
        """The target columns of task ``i`` (one for single-label, one per label for multi)."""
        start = sum(len(t.labels) if t.multi else 1 for t in self.tasks[:i])
        return slice(start, start + (len(self.tasks[i].labels) if self.tasks[i].multi else 1))

    def prefix(self, i: int) -> str:
        """Metric-key infix of task ``i``: none for a single task (keys as they always were)."""
        return "" if len(self.tasks) == 1 else f"{self.tasks[i].name}_"

    def encode(self, frame, where: str = "") -> np.ndarray:
        """Targets of a validated table's rows (``[N]`` classic, else ``[N, columns]``)."""
        cols = []
        for task in self.tasks:
            index = {name: k for k, name in enumerate(task.labels)}
            cells = task.cells(frame[task.name].tolist())
            if task.multi:
                block = np.full((len(cells), len(task.labels)), MISSING, dtype=np.int64)
                for r, cell in enumerate(cells):
                    if cell is not None:
                        block[r] = 0
                        block[r, [_at(index, c, task, where) for c in cell]] = 1
                cols.append(block)
            else:
                cols.append(np.array([[MISSING if c is None else _at(index, c[0], task, where)]
                                      for c in cells], dtype=np.int64).reshape(-1, 1))
        out = np.concatenate(cols, axis=1) if cols else np.zeros((len(frame), 0), np.int64)
        return out[:, 0] if self.classic else out

    def probabilities(self, logits, calibrated: bool = True) -> list[np.ndarray]:
        """Per task: softmax rows (single-label) or per-label sigmoids (multi-label).

        A single-label task's logits are divided by its temperature first, so every predict
        path reports calibrated confidences; the argmax, hence every answer and accuracy, is
        the same either way. ``calibrated=False``: the raw softmax (the "before" of the
        calibration figures)."""
        import torch

        out = []
        for i, task in enumerate(self.tasks):
            part = torch.as_tensor(logits[:, self.logits_of(i)]).float()
            if task.multi:
                out.append(torch.sigmoid(part).numpy())
            else:
                scale = task.temperature if calibrated else 1.0
                out.append(torch.softmax(part / scale, 1).numpy())
        return out

    def task_targets(self, targets: np.ndarray, i: int) -> np.ndarray:
        """Task ``i``'s targets: ``[N]`` indices (single-label) or ``[N, labels]`` (multi)."""
        if self.classic:
            return targets
        part = targets[:, self.targets_of(i)]
        return part if self.tasks[i].multi else part[:, 0]

    def decide(self, i: int, probs: np.ndarray) -> list[Any]:
        """Task ``i``'s answers: a label per row, or (multi-label) the list above threshold."""
        task = self.tasks[i]
        if not task.multi:
            return [task.labels[k] for k in probs.argmax(1).tolist()]
        cut = np.asarray(task.thresholds or [0.5] * len(task.labels))
        return [[task.labels[k] for k in np.flatnonzero(row >= cut)] for row in probs]

    def to_meta(self) -> dict[str, Any]:
        """What the exported model folder records (``ModelMeta.tasks``; the classic layout
        records no tasks, so its one temperature is the top-level ``temperature``)."""
        return {"tasks": None if self.classic else [t.model_dump() for t in self.tasks],
                "task_weighting": "learned" if self.learned_weights else "fixed",
                "temperature": self.tasks[0].temperature if self.classic else 1.0}

    @classmethod
    def from_meta(cls, meta, column: str = "label") -> Layout:
        """A model folder's layout (a folder without tasks: one task on ``meta.labels``,
        read from ``column``: the folder does not record its label column's name)."""
        if not meta.tasks:
            return cls([Task(name=column, labels=list(meta.labels),
                             temperature=getattr(meta, "temperature", 1.0))])
        return cls([Task(**t) for t in meta.tasks], meta.task_weighting == "learned")

    def key(self) -> dict[str, Any]:
        """What cache keys of encoded targets add (nothing for the classic task)."""
        return {} if self.classic else {"tasks": [[t.name, t.labels, t.separator]
                                                  for t in self.tasks]}


def labelled(y: np.ndarray, multi: bool) -> np.ndarray:
    """Rows of one task's targets that carry a label for it (a multi-label row: all its
    columns set; any negative value is no label)."""
    return (y >= 0).all(1) if multi else y >= 0


def layout_of(cfg) -> Layout:
    """The task layout a run trains (a ``FerryConfig`` whose labels are resolved)."""
    return Layout.of(cfg.data, cfg.train.task_weighting == "learned")


def _at(index: dict[str, int], label: str, task: Task, where: str) -> int:
    if label not in index:
        raise ValueError(f"{where}task {task.name!r}: label {label!r} is not one of "
                         f"{task.labels}; list it in the task's labels or fix the row")
    return index[label]
