"""Drift of a scored batch against the reference stored with the model at registration.

Registration (``write_reference``) embeds a seeded sample of the model's training rows with
the exported model itself, through the very ``FerryClassifier.forward`` that batch scoring uses,
so reference and batch embeddings come from one code path and one network. It stores them
(``drift_reference.npz``) with the model's predicted classes on that sample and the training
labels' priors (``drift_reference.json``) in the model folder, which is logged as the
registered model's artifact: every version carries its own reference.

Each scored batch is then tested twice (``check``):

- covariate shift: MMD^2 between the reference embeddings and a seeded sample of at most
  ``monitor.max_samples`` batch embeddings, with its permutation p-value (the same test as
  the training-time domain-shift receipt, ``ferry.evaluation.shift``);
- prior shift: the batch's predicted-class distribution against the reference sample's
  predicted-class distribution (not the label priors: a model's predictions are distributed
  differently from its labels, and comparing like with like keeps an unchanged stream at
  zero), as total variation distance plus a chi-square p-value.

A batch is drifted when the MMD p-value is below ``monitor.p_value``, or when the predicted
classes moved both materially and significantly: TV above ``monitor.max_prior_tv`` and the
chi-square p-value below ``monitor.p_value``. TV alone false-alarms on small batches over many
classes (30 rows over 10 classes: TV 0.22 by chance, chi-square p 0.69, measured on
Fashion-MNIST); the p-value alone flags shifts too small to matter on large batches.
"""

from __future__ import annotations

import json
import logging
import math
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ferry.config import FerryConfig, MonitorConfig
from ferry.files import write_atomic

log = logging.getLogger("ferry.serving")
ARRAYS, FACTS = "drift_reference.npz", "drift_reference.json"


@dataclass
class Reference:
    """What registration stored: embeddings and predicted class (index into ``labels``) of
    each reference row, and the facts about them."""

    embeddings: np.ndarray
    predicted: np.ndarray
    labels: list[str]
    facts: dict[str, Any] = field(default_factory=dict)

    def distribution(self) -> np.ndarray:
        return np.bincount(self.predicted, minlength=len(self.labels)) / max(len(self.predicted), 1)


@dataclass
class Drift:
    """One batch's drift figures and verdict (``as_dict``: the scoring run's metrics)."""

    mmd2: float
    mmd_p_value: float
    prior_tv: float
    prior_chi2: float
    prior_chi2_p_value: float
    rows_tested: int
    reference_rows: int
    permutations: int
    p_threshold: float
    tv_threshold: float
    predicted: dict[str, float]
    reference_predicted: dict[str, float]

    @property
    def mmd_drift(self) -> bool:
        return not math.isnan(self.mmd_p_value) and self.mmd_p_value < self.p_threshold

    @property
    def prior_drift(self) -> bool:
        """Material (TV above the threshold) and significant (chi-square p below the MMD's
        threshold): a 30-row batch over 10 classes has a TV near 0.2 from chance alone."""
        return self.prior_tv > self.tv_threshold and self.prior_chi2_p_value < self.p_threshold

    @property
    def drifted(self) -> bool:
        return self.mmd_drift or self.prior_drift

    def as_dict(self) -> dict[str, float]:
        """The figures as metrics (NaN ones left out: MLflow shows them as gaps)."""
        keys = ("mmd2", "mmd_p_value", "prior_tv", "prior_chi2", "prior_chi2_p_value",
                "rows_tested", "reference_rows")
        out = {k: float(getattr(self, k)) for k in keys}
        out["drift"] = float(self.drifted)
        return {k: v for k, v in out.items() if not math.isnan(v)}

    def record(self) -> dict[str, Any]:
        """Everything, for the run's ``drift.json`` and the flow's result."""
        return {**asdict(self), "drifted": self.drifted, "mmd_drift": self.mmd_drift,
                "prior_drift": self.prior_drift}

    def line(self) -> str:
        """``drift: MMD^2 0.0123 (p 0.002 < 0.01), predicted classes TV 0.31 > 0.2 ...``"""
        mmd = (f"MMD^2 {self.mmd2:.4f} (p {self.mmd_p_value:.3g} "
               f"{'<' if self.mmd_drift else '>='} {self.p_threshold:g})"
               if not math.isnan(self.mmd_p_value) else "MMD^2 not tested (under 2 rows)")
        tv = (f"predicted-class TV {self.prior_tv:.3f} "
              f"{'>' if self.prior_tv > self.tv_threshold else '<='} {self.tv_threshold:g} "
              f"(chi-square p {self.prior_chi2_p_value:.3g} "
              f"{'<' if self.prior_chi2_p_value < self.p_threshold else '>='} "
              f"{self.p_threshold:g})")
        verdict = "DRIFT" if self.drifted else "no drift"
        return f"{verdict}: {mmd}; {tv}; {self.rows_tested} batch rows vs " \
               f"{self.reference_rows} reference rows"


def classifier(model_dir: Path) -> Any:
    """The pyfunc's ``FerryClassifier`` on an exported model folder, as MLflow would load it
    (the context it reads is just the folder): registration embeds its reference through
    the same forward pass that scoring uses."""
    from ferry.tracking.pyfunc import FerryClassifier

    model = FerryClassifier()
    model.load_context(types.SimpleNamespace(artifacts={"model": str(model_dir)}))
    return model


def primary_classes(meta: Any, logits: Any) -> np.ndarray:
    """Each row's predicted class of the primary task (a multi-label task: its most probable
    label), as indices into that task's labels."""
    from ferry.models.tasks import Layout

    return Layout.from_meta(meta).probabilities(logits)[0].argmax(1)


def primary_labels(meta: Any) -> list[str]:
    from ferry.models.tasks import Layout

    return list(Layout.from_meta(meta).tasks[0].labels)


def reference_rows(cfg: FerryConfig, split_dir: Path) -> tuple[list[str], Any]:
    """(items, the training split): a seeded sample of at most ``monitor.reference_rows``
    training rows (texts, or image paths). Measured on the default MiniLM model fine-tuned
    on rotten-tomatoes, its training rows and unseen test rows are one distribution to the
    MMD test (p 0.51, 300 vs 300), so training rows are a fair reference for new data."""
    from ferry.data.splits import read_split

    column = cfg.data.text_column if cfg.data.modality == "text" else cfg.data.path_column
    train = read_split(Path(split_dir), "train")
    take = train.sample(n=min(cfg.monitor.reference_rows, len(train)),
                        random_state=cfg.monitor.seed)
    return take[column].astype(str).tolist(), train


def write_reference(cfg: FerryConfig, model_dir: Path, split_dir: Path) -> Path:
    """Embed the reference sample with the exported model and store it in ``model_dir``
    (atomically: a folder is never logged with half a reference)."""
    from ferry.data import cells

    items, train = reference_rows(cfg, Path(split_dir))
    model = classifier(model_dir)
    logits, embeddings = model.forward(items, embeddings=True, batch_size=cfg.monitor.batch_size)
    labels = primary_labels(model.meta)
    task = cfg.data.task_list()[0]
    counts = cells.counts(train, task)
    total = max(sum(counts.values()), 1)
    predicted = primary_classes(model.meta, logits).astype(np.int64)
    facts = {"rows": len(items), "train_rows": len(train),
             "seed": cfg.monitor.seed, "dim": int(embeddings.shape[1]), "task": task.column,
             "labels": labels, "label_priors": {k: counts.get(k, 0) / total for k in labels},
             "predicted_distribution": dict(zip(labels, (np.bincount(
                 predicted, minlength=len(labels)) / len(predicted)).tolist(), strict=True))}
    write_atomic(Path(model_dir) / ARRAYS, lambda tmp: _save_npz(
        tmp, embeddings=embeddings.numpy().astype(np.float32), predicted=predicted))
    path = write_atomic(Path(model_dir) / FACTS, lambda tmp: tmp.write_text(
        json.dumps(facts, indent=2), encoding="utf-8"))
    log.info("drift reference: %d training rows embedded (%d wide) with the exported model",
             len(items), facts["dim"])
    return path


def _save_npz(tmp: Path, **arrays: np.ndarray) -> None:
    with tmp.open("wb") as handle:  # a handle: np.savez would append .npz to the name
        np.savez(handle, **arrays)


def read_reference(model_dir: Path) -> Reference | None:
    """The stored reference, or None for a model registered before Ferry stored one."""
    folder = Path(model_dir)
    if not (folder / ARRAYS).is_file() or not (folder / FACTS).is_file():
        return None
    facts = json.loads((folder / FACTS).read_text(encoding="utf-8"))
    with np.load(folder / ARRAYS) as arrays:
        return Reference(arrays["embeddings"], arrays["predicted"], list(facts["labels"]), facts)


def check(reference: Reference, embeddings: np.ndarray, predicted: np.ndarray,
          monitor: MonitorConfig) -> Drift:
    """The batch (its embeddings and primary-task predicted classes, every scored row)
    against the reference; see the module docstring for the two tests."""
    from ferry.evaluation.shift import mmd_test

    rng = np.random.default_rng(monitor.seed)
    n = len(embeddings)
    sample = embeddings[np.sort(rng.choice(n, size=min(n, monitor.max_samples), replace=False))]
    mmd2 = p = math.nan
    if len(sample) >= 2 and len(reference.embeddings) >= 2:
        result = mmd_test(reference.embeddings, np.asarray(sample), monitor.permutations,
                          monitor.seed)
        mmd2, p = result.mmd2, result.p_value
    tv, chi2, chi2_p = prior_shift(reference, predicted)
    labels = reference.labels
    batch = np.bincount(predicted, minlength=len(labels)) / max(len(predicted), 1)
    return Drift(mmd2, p, tv, chi2, chi2_p, len(sample), len(reference.embeddings),
                 monitor.permutations, monitor.p_value, monitor.max_prior_tv,
                 dict(zip(labels, batch.tolist(), strict=True)),
                 dict(zip(labels, reference.distribution().tolist(), strict=True)))


def prior_shift(reference: Reference, predicted: np.ndarray) -> tuple[float, float, float]:
    """(TV distance, chi-square statistic, its p-value) of the batch's predicted-class
    counts against the reference's predicted-class counts. The chi-square is the two-sample
    test of homogeneity (a contingency table of both count rows): the reference is a sample
    too, and treating its shares as the truth would inflate the statistic by about
    1 + n_batch / n_reference, raising false alarms on large batches."""
    from scipy.stats import chi2_contingency

    k = len(reference.labels)
    counts = np.bincount(predicted, minlength=k).astype(float)
    n = counts.sum()
    if n == 0:
        return math.nan, math.nan, math.nan
    ref = np.bincount(reference.predicted, minlength=k).astype(float)
    tv = 0.5 * float(np.abs(counts / n - ref / max(ref.sum(), 1)).sum())
    seen = (counts + ref) > 0  # a class neither side predicted carries no information
    if seen.sum() < 2 or ref.sum() == 0:
        return tv, 0.0, 1.0
    stat, p, _, _ = chi2_contingency(np.vstack([counts, ref])[:, seen])
    return tv, float(stat), float(p)


def retrain_request(cfg: FerryConfig, config: str | None, overrides: list[str],
                    result: dict[str, Any]) -> dict[str, Any]:
    """What starting the retrain deployment sends: the scoring's own config (path and
    overrides, so the retrain trains what the scored model was trained with), the drift as
    its reason, a flow run name that says why, and an idempotency key tied to the scored
    model version and the input's content (a retried task, or the same drifted file scored
    again, never starts a second retrain)."""
    name = f"drift-{result['model_name']}-v{result['model_version']}"
    return {"name": cfg.monitor.retrain_deployment, "flow_run_name": name,
            "parameters": {"config": config, "overrides": list(overrides),
                           "reason": _reason(result)},
            "tags": ["ferry-drift", f"scored-model:{result['model_name']}/"
                     f"{result['model_version']}"],
            "idempotency_key": f"ferry-drift-{result['model_name']}-v{result['model_version']}-"
                               f"{result['input_md5']}"}


def _reason(result: dict[str, Any]) -> str:
    return (f"drift of {result['input']} (md5 {result['input_md5'][:12]}, scoring run "
            f"{result.get('run_id', '')}) against {result['model_name']} "
            f"v{result['model_version']}: {result['drift_line']}")
