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


class DataConfig(_Strict):
    """Where the labelled data lives and what it must look like.

    ``modality: image`` reads ``path`` as a manifest CSV (``path_column``, ``label_column``,
    optional ``split_column``; paths relative to the manifest) or as a folder with one
    subfolder per class (optionally inside ``train/``, ``validation/``, ``test/``).
    """

    modality: Literal["text", "image"] = "text"
    recipe: Literal["rotten-tomatoes", "fashion-mnist"] | None = "rotten-tomatoes"
    path: Path = Path("data/rotten_tomatoes.csv")
    dvc_file: Path = Path("data.dvc")
    text_column: str = "text"
    path_column: str = "path"
    label_column: str = "label"
    split_column: str | None = None
    # null: the labels found in the training split (sorted), recorded on the run; a list is
    # enforced (a row with another label stops the run). Built-in recipes know theirs.
    labels: list[str] | None = Field(None, min_length=2)
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
        """A built-in recipe's labels, in its order (the head's rows and prototypes follow it)."""
        if self.labels is None and self.recipe in RECIPE_LABELS:
            self.labels = list(RECIPE_LABELS[self.recipe])
        return self

    def policy(self, rule: str) -> str:
        """The action for one repair rule, ``fail`` for every rule under ``strict``."""
        action = getattr(self.repair, rule)
        return "fail" if self.strict else action

    # Long texts: cut at model.max_length (truncate), read whole as overlapping windows
    # (chunk), or auto: chunk when more than a tenth of the training texts would be cut.
    long_text: Literal["auto", "truncate", "chunk"] = "auto"
    chunk: ChunkConfig = Field(default_factory=ChunkConfig)
