"""A classical baseline for the receipt: is a pretrained network worth its cost here?

Text: TF-IDF + logistic regression; images: logistic regression on downsampled pixels. Both
are tuned on the validation split over a small grid (the deep model picks its best epoch on
the same split), fit on the training split only and scored on the same test rows as the deep
model, so the paired bootstrap of ``receipt.paired_bootstrap`` applies. Seconds on a CPU.
Pure scikit-learn + numpy: the pipeline step reads the splits and logs the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Downsampled side of an image for the pixel baseline: 16 x 16 x 3 = 768 features.
IMAGE_SIZE = 16
TEXT_C = (0.3, 1.0, 3.0, 10.0, 30.0)
TEXT_NGRAMS = (1, 2)  # words, or words and word pairs
IMAGE_C = (0.01, 0.1, 1.0)
# What a kept result depends on besides the data: change it when the recipe changes.
RECIPE = {"text_c": TEXT_C, "ngrams": TEXT_NGRAMS, "image_c": IMAGE_C, "size": IMAGE_SIZE,
          "version": 1}


@dataclass
class ClassicalResult:
    """The tuned baseline: what it is, what won on validation, its test predictions."""

    name: str
    params: dict[str, Any]
    val_accuracy: float
    test_accuracy: float
    test_macro_f1: float
    y_pred: np.ndarray
    seconds: float
    grid: list[dict[str, Any]] = field(default_factory=list)  # every point with its score

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (the pipeline keeps it per data version: a re-run skips the fit)."""
        return {**{k: getattr(self, k) for k in ("name", "params", "val_accuracy",
                                                 "test_accuracy", "test_macro_f1", "seconds",
                                                 "grid")},
                "y_pred": self.y_pred.tolist()}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ClassicalResult:
        return cls(**{**raw, "y_pred": np.asarray(raw["y_pred"])})

    def describe(self) -> str:
        """One line for logs and tags: ``TF-IDF + logistic regression (C=3, ngram_max=2)``."""
        return f"{self.name} ({', '.join(f'{k}={v}' for k, v in self.params.items())})"


def text_baseline(texts: dict[str, Sequence[str]], labels: dict[str, Sequence[int]],
                  seed: int = 0) -> ClassicalResult:
    """TF-IDF (sublinear term frequencies, words up to ``ngram_max``) + logistic regression,
    ``C`` and the n-gram range chosen on validation. ``texts``/``labels``: per split.
    The vocabulary and IDF come from the training split only."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    began = time.perf_counter()
    features = {}
    for ngram_max in TEXT_NGRAMS:
        vec = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True,
                              strip_accents="unicode").fit(list(texts["train"]))
        features[("ngram_max", ngram_max)] = {k: vec.transform(list(v))
                                              for k, v in texts.items()}
    return _tuned("TF-IDF + logistic regression", features, TEXT_C, labels, seed, began,
                  solver="saga")  # sparse features: ~3x faster than lbfgs, same accuracy


def image_baseline(pixels: dict[str, np.ndarray], labels: dict[str, Sequence[int]],
                   seed: int = 0) -> ClassicalResult:
    """Standardised downsampled pixels (N x C x H x W uint8, flattened) + logistic
    regression, ``C`` chosen on validation (the scaling is fit on the training split)."""
    from sklearn.preprocessing import StandardScaler

    began = time.perf_counter()
    flat = {k: _gray_when_equal(np.asarray(v, dtype=np.float32)) for k, v in pixels.items()}
    scaler = StandardScaler().fit(flat["train"])
    side = pixels["train"].shape[-1]
    features = {("pixels", f"{side}x{side}"): {k: scaler.transform(v) for k, v in flat.items()}}
    return _tuned(f"logistic regression on {side}x{side} pixels", features, IMAGE_C, labels,
                  seed, began)


def _tuned(name: str, features: dict[tuple[str, Any], dict[str, Any]], grid_c: tuple,
           y: dict[str, Sequence[int]], seed: int, began: float,
           solver: str = "lbfgs") -> ClassicalResult:
    """Fit logistic regression for every (features, C) on train, keep the best on
    validation (ties: the first, i.e. the stronger regularisation), score it on test."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from threadpoolctl import threadpool_limits

    train_y, val_y, test_y = (np.asarray(y[k]) for k in ("train", "validation", "test"))
    best_acc, scored = -1.0, []
    with threadpool_limits(limits=1):  # (many-threaded BLAS on small matrices: 30x slower)
        for (key, value), x in features.items():
            for c in grid_c:
                model = LogisticRegression(C=c, max_iter=2000, random_state=seed, solver=solver)
                model.fit(x["train"], train_y)
                acc = float(accuracy_score(val_y, model.predict(x["validation"])))
                scored.append({key: value, "C": c, "val_accuracy": acc})
                if acc > best_acc:
                    best_acc, chosen, pred = acc, {key: value, "C": c}, model.predict(x["test"])
    return ClassicalResult(name, chosen, best_acc, float(accuracy_score(test_y, pred)),
                           float(f1_score(test_y, pred, average="macro", zero_division=0)),
                           np.asarray(pred), time.perf_counter() - began, scored)


def _gray_when_equal(batch: np.ndarray) -> np.ndarray:
    """Flattened pixels; one channel when all three are equal (grayscale stored as RGB, as
    Fashion-MNIST is): three copies of each feature make the fit ill-conditioned (lbfgs
    took minutes instead of seconds) and add nothing."""
    if batch.ndim == 4 and batch.shape[1] == 3 and np.array_equal(batch[:, 0], batch[:, 1]) \
            and np.array_equal(batch[:, 1], batch[:, 2]):
        batch = batch[:, :1]
    return batch.reshape(len(batch), -1)
