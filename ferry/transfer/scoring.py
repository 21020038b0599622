"""Scoring exported model folders: exactly what gets registered is what gets measured.

Evaluation (test metrics, confusion matrix, per-example predictions for the receipt) and
promotion (challenger and champion on the same holdout) both score a model folder through
``test_probabilities``; nothing here knows how the folder was trained.

Evaluation also calibrates the folder: each single-label task's softmax temperature is fitted
on the validation split and written into its ``ferry_model.json`` before the test split is
scored, so what gets registered carries it. Fitting here rather than in training means a
training reused from the cache is calibrated too; the fit is deterministic, so a re-run
writes the same value.
"""

from __future__ import annotations

import json
from pathlib import Path

from ferry.config import FerryConfig
from ferry.evaluation import calibration, metrics, task_metrics
from ferry.files import write_atomic
from ferry.models.tasks import Layout
from ferry.transfer import cache, inference, modality
from ferry.transfer.records import Completion
from ferry.transfer.runtime import resolve_device

PREDICTIONS = "predictions.json"


def evaluate(cfg: FerryConfig, model_dir: Path, split_dir: Path,
             prefix: str) -> tuple[dict[str, float], list[Path]]:
    """Calibrate the exported model folder (exactly what gets registered) on the validation
    split, then score it on the test split: metrics with the test ECE before and after
    temperature scaling, artifacts with a reliability diagram per single-label task.

    The scores of a given exported model on a given split never change, so they are kept
    beside the model and reused by a re-run (a record from before calibration is not: its
    folder has no temperature yet).
    """
    out_dir = evaluation_dir(model_dir, prefix)
    saved = out_dir / "metrics.json"
    if saved.is_file() and (out_dir / PREDICTIONS).is_file():
        record = json.loads(saved.read_text(encoding="utf-8"))
        if record.get("split_dir") == str(split_dir) and record.get("calibrated") and \
                record.get("model_mtime") == (model_dir / "model.safetensors").stat().st_mtime_ns:
            return record["metrics"], [out_dir / name for name in record["artifacts"]]
    layout, scored = split_logits(cfg, model_dir, split_dir, ("validation", "test"))
    if calibration.calibrate(layout, *scored["validation"]):
        _record_temperatures(model_dir, layout)
    targets, logits = scored["test"]
    probs = layout.probabilities(logits)
    out = task_metrics.scores(layout, targets, probs, prefix + "test_")
    out |= calibration.scores(layout, targets, logits, prefix)
    artifacts = task_metrics.write_artifacts(layout, targets, probs, out_dir)
    diagrams = calibration.diagrams(layout, targets, logits, out_dir)
    artifacts += diagrams if layout.classic else []  # else inside the tasks' folders
    _write_json(out_dir / PREDICTIONS, task_metrics.predictions(layout, targets, probs))
    _write_json(saved, {"split_dir": str(split_dir), "metrics": out, "calibrated": True,
                        "model_mtime": (model_dir / "model.safetensors").stat().st_mtime_ns,
                        "artifacts": [a.name for a in artifacts]})
    return out, artifacts


def test_probabilities(cfg: FerryConfig, model_dir: Path, split_dir: Path):
    """(targets, per-task probabilities, the model's task layout) of an exported model folder
    on the test split: what evaluation and promotion both score (``task_metrics.scores``).
    The targets are encoded with the model's own tasks and label order; the probabilities
    are calibrated by the temperatures the folder records."""
    layout, scored = split_logits(cfg, model_dir, split_dir, ("test",))
    targets, logits = scored["test"]
    return targets, layout.probabilities(logits), layout


def split_logits(cfg: FerryConfig, model_dir: Path, split_dir: Path, names: tuple[str, ...]):
    """(the folder's task layout, {split: (targets, raw logits)}) with the model loaded once."""
    mod = modality.of_folder(model_dir)
    model, processor, meta = mod.load(model_dir)
    layout = Layout.from_meta(meta, cfg.data.label_column)
    device = resolve_device(cfg.train.device)
    model.to(device)
    out = {}
    for name, (items, labels) in cache.split_labels(split_dir, cfg, names, layout).items():
        data = mod.encode(processor, meta, items, labels)
        logits = inference.run(model, mod.batches(data, cfg.train.eval_batch_size, None,
                                                  device), len(data), device,
                               desc=f"evaluate {name}")
        out[name] = (data.labels.numpy(), logits)
    return layout, out


def _record_temperatures(model_dir: Path, layout: Layout) -> None:
    """Write the fitted temperatures into the folder's ``ferry_model.json`` (atomically)."""
    from ferry.models import meta

    current = meta.read(model_dir)
    meta.write(model_dir, current.model_copy(update=layout.to_meta()))




def evaluation_dir(model_dir: Path, prefix: str) -> Path:
    """Where the test scores and per-example predictions of an exported model are kept."""
    return model_dir.parent / f"evaluation-{prefix}test"


def predictions(model_dir: Path, prefix: str) -> dict[str, list]:
    """Per-example test labels and predictions written by ``evaluate``."""
    path = evaluation_dir(model_dir, prefix) / PREDICTIONS
    return json.loads(path.read_text(encoding="utf-8"))


def learning_curves(model_dir: Path, prefix: str) -> list[Path]:
    """Per-epoch curves of the training that produced ``model_dir`` (PNG), if it trained."""
    done = Completion.read(model_dir.parent)
    if done is None or not done.history:
        return []
    return [metrics.plot_history(done.history, evaluation_dir(model_dir, prefix) /
                                 "learning_curves.png")]


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2), encoding="utf-8"))
