"""A classical baseline for the receipt: is a pretrained network worth its cost here?

Text: TF-IDF + logistic regression; images: logistic regression on downsampled pixels. Both
are tuned on the validation split over a small grid (the deep model picks its best epoch on
the same split), fit on the training split only and scored on the same test rows as the deep
model, so the paired bootstrap of ``receipt.paired_bootstrap`` applies. Seconds on a CPU.
Several tasks (``ferry.models.tasks.Layout``): one baseline per task on shared features, each
fit on its own labelled rows; a multi-label task is one-vs-rest logistic regression at 0.5
thresholds (macro-F1 and subset accuracy). Pure scikit-learn + numpy: the pipeline step reads
the splits and logs the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferry.models.tasks import MISSING, Layout, labelled

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
    began = time.perf_counter()
    return _tuned(*text_features(texts), labels, seed, began)


def image_baseline(pixels: dict[str, np.ndarray], labels: dict[str, Sequence[int]],
                   seed: int = 0) -> ClassicalResult:
    """Standardised downsampled pixels (N x C x H x W uint8, flattened) + logistic
    regression, ``C`` chosen on validation (the scaling is fit on the training split)."""
    began = time.perf_counter()
    return _tuned(*image_features(pixels), labels, seed, began)


Features = tuple[str, dict[tuple[str, Any], dict[str, Any]], tuple, str]


def text_features(texts: dict[str, Sequence[str]]) -> Features:
    """(name, TF-IDF features per n-gram range and split, C grid, solver): computed once and
    shared by every task of a multi-task baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    features = {}
    for ngram_max in TEXT_NGRAMS:
        vec = TfidfVectorizer(ngram_range=(1, ngram_max), sublinear_tf=True,
                              strip_accents="unicode").fit(list(texts["train"]))
        features[("ngram_max", ngram_max)] = {k: vec.transform(list(v))
                                              for k, v in texts.items()}
    # sparse features: saga is ~3x faster than lbfgs, same accuracy
    return "TF-IDF + logistic regression", features, TEXT_C, "saga"


def image_features(pixels: dict[str, np.ndarray]) -> Features:
    """(name, standardised flattened pixels per split, C grid, solver)."""
    from sklearn.preprocessing import StandardScaler

    flat = {k: _gray_when_equal(np.asarray(v, dtype=np.float32)) for k, v in pixels.items()}
    scaler = StandardScaler().fit(flat["train"])
    side = pixels["train"].shape[-1]
    features = {("pixels", f"{side}x{side}"): {k: scaler.transform(v) for k, v in flat.items()}}
    return f"logistic regression on {side}x{side} pixels", features, IMAGE_C, "lbfgs"


def per_task(layout: Layout, features: Features, targets: dict[str, np.ndarray],
             seed: int = 0, began: float | None = None) -> dict[str, ClassicalResult]:
    """One tuned baseline per task of ``layout`` on shared features; ``targets`` per split as
    ``Layout.encode`` gives them. Each task learns from its own labelled rows (a multi-label
    task: one-vs-rest, 0.5 thresholds) and predicts every test row. The first task's seconds
    include computing the features (when ``began`` is when that started), so the seconds add
    up to the baseline's cost."""
    out, began = {}, time.perf_counter() if began is None else began
    for i, task in enumerate(layout.tasks):
        y = {k: layout.task_targets(v, i) for k, v in targets.items()}
        out[task.name] = _tuned(*features, y, seed, began, multi=task.multi)
        began = time.perf_counter()
    return out


def _tuned(name: str, features: dict[tuple[str, Any], dict[str, Any]], grid_c: tuple,
           solver: str, y: dict[str, Sequence[int]], seed: int, began: float,
           multi: bool = False) -> ClassicalResult:
    """Fit logistic regression for every (features, C) on train, keep the best on
    validation (ties: the first, i.e. the stronger regularisation), score it on test.
    Rows without a label (``MISSING``: another task's row) are neither fit nor scored.
    A multi-label task is tuned on validation macro-F1: its accuracy (every label of the row
    right) is all-or-nothing, often tied near zero across the grid."""
    from threadpoolctl import threadpool_limits

    train_y, val_y, test_y = (np.asarray(y[k]) for k in ("train", "validation", "test"))
    fit, val, test = (labelled(v, multi) for v in (train_y, val_y, test_y))
    best, scored = -1.0, []
    with threadpool_limits(limits=1):  # (many-threaded BLAS on small matrices: 30x slower)
        for (key, value), x in features.items():
            for c in grid_c:
                model = _model(c, seed, solver, multi).fit(x["train"][fit], train_y[fit])
                point = _point(val_y[val], model.predict(x["validation"][val]), multi)
                scored.append({key: value, "C": c, **point})
                score = point["val_macro_f1"] if multi else point["val_accuracy"]
                if score > best:
                    best, chosen, kept = score, {key: value, "C": c}, point["val_accuracy"]
                    pred = model.predict(x["test"])
    done = _point(test_y[test], np.asarray(pred)[test], True)
    return ClassicalResult(name, chosen, kept, done["val_accuracy"], done["val_macro_f1"],
                           np.asarray(pred), time.perf_counter() - began, scored)


def _model(c: float, seed: int, solver: str, multi: bool):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = LogisticRegression(C=c, max_iter=2000, random_state=seed, solver=solver)
    return OneVsRestClassifier(model) if multi else model


def _point(y: np.ndarray, pred: np.ndarray, with_f1: bool) -> dict[str, float]:
    """Accuracy (subset accuracy for 0/1 rows) and, when asked, macro-F1 of predictions."""
    from sklearn.metrics import accuracy_score, f1_score

    out = {"val_accuracy": float(accuracy_score(y, pred))}
    if with_f1:
        out["val_macro_f1"] = float(f1_score(y, pred, average="macro", zero_division=0))
    return out


def record(layout: Layout, test_targets: np.ndarray,
           results: dict[str, ClassicalResult]) -> dict[str, Any]:
    """The baselines' test predictions in the form of the model's ``predictions.json``
    (``task_metrics.predictions``), so the receipt pairs the two row by row."""
    out: dict[str, Any] = {}
    for i, task in enumerate(layout.tasks):
        y = layout.task_targets(np.asarray(test_targets), i)
        if task.multi:
            truth = [None if (r == MISSING).any() else r.tolist() for r in y]
        else:
            truth = [None if v == MISSING else int(v) for v in y.tolist()]
        rec = {"y_true": truth, "y_pred": np.asarray(results[task.name].y_pred)
               .astype(int).tolist()}
        if i == 0:
            out |= rec
        if not layout.classic:
            out.setdefault("tasks", {})[task.name] = rec
    return out


def metrics(layout: Layout, results: dict[str, ClassicalResult]) -> dict[str, float]:
    """``classical_test_accuracy``/``_macro_f1``/``classical_val_accuracy`` of one task; with
    several, ``classical_<task>_...`` each and the unprefixed ones as their means (as the
    model's own test metrics are); ``classical_seconds`` is the whole baseline's cost."""
    keys = ("test_accuracy", "test_macro_f1", "val_accuracy")
    out: dict[str, float] = {}
    for i, task in enumerate(layout.tasks):
        out |= {f"classical_{layout.prefix(i)}{k}": float(getattr(results[task.name], k))
                for k in keys}
    if len(layout.tasks) > 1:
        for k in keys:
            out[f"classical_{k}"] = float(np.mean([getattr(r, k) for r in results.values()]))
    return out | {"classical_seconds": float(sum(r.seconds for r in results.values()))}


def dump(layout: Layout, results: dict[str, ClassicalResult]) -> dict[str, Any]:
    """JSON-ready results (one task: the result itself, as kept before there were tasks)."""
    if layout.classic:
        return results[layout.tasks[0].name].to_dict()
    return {"tasks": {name: r.to_dict() for name, r in results.items()}}


def load(layout: Layout, raw: dict[str, Any]) -> dict[str, ClassicalResult]:
    """What ``dump`` kept, per task name."""
    if "tasks" not in raw:
        return {layout.tasks[0].name: ClassicalResult.from_dict(raw)}
    return {name: ClassicalResult.from_dict(r) for name, r in raw["tasks"].items()}


def _gray_when_equal(batch: np.ndarray) -> np.ndarray:
    """Flattened pixels; one channel when all three are equal (grayscale stored as RGB, as
    Fashion-MNIST is): three copies of each feature make the fit ill-conditioned (lbfgs
    took minutes instead of seconds) and add nothing."""
    if batch.ndim == 4 and batch.shape[1] == 3 and np.array_equal(batch[:, 0], batch[:, 1]) \
            and np.array_equal(batch[:, 1], batch[:, 2]):
        batch = batch[:, :1]
    return batch.reshape(len(batch), -1)
