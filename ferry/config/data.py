"""The data block: where the labelled table or image folder lives and what it must look like."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ferry.config.base import Strict as _Strict


class SplitConfig(_Strict):
    """Stratified, seeded train/validation/test split (used when the data has no split column)."""

    validation: float = Field(0.1, gt=0, lt=0.5)
    test: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 42
    # The column the split keeps class shares of (null: the primary task's label). A finer
    # column (speaker within party) keeps every speaker in every split, and gives runs that
    # predict different columns of one file the same rows.
    stratify: str | None = None


class AugmentConfig(_Strict):
    """Training-only image augmentation (batched on the model's device; off in evaluation)."""

    enabled: bool = True
    crop_scale: float = Field(0.8, gt=0, le=1)  # random resized crop: smallest area kept
    flip: bool = True  # random horizontal flip
    jitter: float = Field(0.1, ge=0, lt=1)  # brightness and contrast, +- this fraction


class ImageConfig(_Strict):
    """Image data: the model's input size, validation bounds, the fashion-mnist subset."""

    size: int = Field(64, ge=16, le=1024)  # images are resized (shorter side) and centre-cropped
    modes: list[str] = Field(default_factory=lambda: ["L", "RGB", "RGBA", "P"], min_length=1)
    min_side: int = Field(8, ge=1)
    max_side: int = Field(8192, ge=1)
    subset_train: int = Field(2700, ge=20)  # fashion-mnist: drawn from the official train set
    subset_test: int = Field(1000, ge=10)  # ... and from the official test set
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


RECIPE_LABELS = {"rotten-tomatoes": ["rotten", "fresh"],
                 "fashion-mnist": ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal",
                                   "shirt", "sneaker", "bag", "ankle-boot"]}

Repair = Literal["drop", "fail"]


class RepairConfig(_Strict):
    """What validation does with messy-but-usable rows: ``drop`` them and report each one, or
    ``fail`` the run naming them (``data.strict: true`` makes every rule ``fail``)."""

    missing: Repair = "drop"  # empty/NaN text or label
    duplicates: Repair = "drop"  # the same text and label again (whitespace-normalised)
    conflicts: Repair = "drop"  # one text under several labels: all its rows go
    leakage: Repair = "drop"  # a validation/test text that is also a training text
    long: Literal["keep", "fail"] = "keep"  # texts over max_text_chars (the tokenizer cuts)


class ChunkConfig(_Strict):
    """Windows over a long text (``data.long_text: chunk``): ``model.max_length`` tokens each,
    neighbours sharing ``overlap`` tokens, at most ``max_windows`` per text (evenly spread over
    a longer one), pooled into one representation: ``mean``, or a learned ``attention`` over
    the windows (starts as the mean)."""

    overlap: int | None = Field(None, ge=0)  # null: a quarter of a window (31 of 128 tokens)
    max_windows: int = Field(16, ge=1, le=512)
    pooling: Literal["mean", "attention"] = "mean"


class TaskConfig(_Strict):
    """One label column the model predicts (``data.tasks``): one head per task on the shared
    backbone. A row whose cell is empty has no label for this task: it trains the others."""

    column: str
    labels: list[str] | None = Field(None, min_length=2)  # null: inferred from the train split
    weight: float = Field(1.0, gt=0)  # its loss's weight (train.task_weighting: fixed)
    separator: str | None = Field(None, min_length=1)  # multi-label cells: "a|b" with "|"


class DataConfig(_Strict):
    """Where the labelled data lives and what it must look like.

    ``modality: image`` reads ``path`` as a manifest CSV (``path_column``, ``label_column``,
    optional ``split_column``; paths relative to the manifest) or as a folder with one
    subfolder per class (optionally inside ``train/``, ``validation/``, ``test/``).
    """

    modality: Literal["text", "image"] = "text"
    recipe: Literal["rotten-tomatoes", "presidential-debates",
                    "fashion-mnist"] | None = "rotten-tomatoes"
    path: Path = Path("data/rotten_tomatoes.csv")
    dvc_file: Path = Path("data.dvc")
    text_column: str = "text"
    path_column: str = "path"
    label_column: str = "label"
    split_column: str | None = None
    # null: the labels found in the training split (sorted), recorded on the run; a list is
    # enforced (a row with another label stops the run). Built-in recipes know theirs.
    labels: list[str] | None = Field(None, min_length=2)
    # Several label columns (multi-task): one shared backbone, one head per task. The first
    # task is the primary one: its label must be present (the split is stratified on it);
    # label_column and labels mirror it. Null: one task, label_column.
    tasks: list[TaskConfig] | None = Field(None, min_length=1)
    # Multi-label: the label cell holds several labels joined by this separator ("a|b");
    # sigmoid head, per-label thresholds tuned on validation. (Per task: tasks[].separator.)
    label_separator: str | None = Field(None, min_length=1)
    # Multi-label from several 0/1 columns: they are joined into label_column at load time.
    label_columns: list[str] | None = Field(None, min_length=2)
    split: SplitConfig = Field(default_factory=SplitConfig)
    min_text_chars: int = Field(1, ge=1)
    max_text_chars: int = Field(5000, ge=1)
    min_class_count: int = Field(10, ge=1)
    max_rows: int | None = Field(None, ge=10)
    strict: bool = False  # true: every repair below is a failure instead
    repair: RepairConfig = Field(default_factory=RepairConfig)
    image: ImageConfig = Field(default_factory=ImageConfig)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        return labels

    @model_validator(mode="after")
    def _recipe_labels(self) -> DataConfig:
        """A built-in recipe's labels, in its order (the head's rows and prototypes follow it);
        with ``tasks``, label_column/labels/label_separator mirror the first task."""
        if self.label_columns and self.tasks:
            raise ValueError("data.label_columns (0/1 columns) is for one multi-label task; "
                             "with data.tasks give a separator per task instead")
        mirror: dict = {}  # (set without re-validating: assignment would re-enter here)
        if self.label_columns and not self.label_separator:
            mirror["label_separator"] = "|"
        if self.tasks:
            names = [t.column for t in self.tasks]
            if len(set(names)) != len(names):
                raise ValueError(f"data.tasks columns must be unique, got {names}")
            first = self.tasks[0]
            mirror |= {"label_column": first.column, "labels": first.labels,
                       "label_separator": first.separator}
        self.__dict__.update(mirror)
        if self.labels is None and self.recipe in RECIPE_LABELS:
            self.labels = list(RECIPE_LABELS[self.recipe])
        return self

    def task_list(self) -> list[TaskConfig]:
        """Every task, one for a single-label-column config (its labels are ``labels``)."""
        if self.tasks:
            return [self.tasks[0].model_copy(update={"labels": self.labels}), *self.tasks[1:]]
        return [TaskConfig(column=self.label_column, labels=self.labels,
                           separator=self.label_separator)]

    def with_task_labels(self, found: dict[str, list[str]]) -> DataConfig:
        """This block with every task's label list set (as validation found them)."""
        update: dict = {"labels": found.get(self.label_column, self.labels)}
        if self.tasks:
            update["tasks"] = [t.model_copy(update={"labels": found.get(t.column, t.labels)})
                               for t in self.tasks]
        return self.model_copy(update=update)

    def policy(self, rule: str) -> str:
        """The action for one repair rule, ``fail`` for every rule under ``strict``."""
        action = getattr(self.repair, rule)
        return "fail" if self.strict else action

    # Long texts: cut at model.max_length (truncate), read whole as overlapping windows
    # (chunk), or auto: chunk when more than a tenth of the training texts would be cut.
    long_text: Literal["auto", "truncate", "chunk"] = "auto"
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
