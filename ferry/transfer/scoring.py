"""Scoring exported model folders: exactly what gets registered is what gets measured.

Evaluation (test metrics, confusion matrix, per-example predictions for the receipt) and
promotion (challenger and champion on the same holdout) both score a model folder through
``test_probabilities``; nothing here knows how the folder was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

from ferry.config import FerryConfig
from ferry.evaluation import metrics, task_metrics
from ferry.files import write_atomic
from ferry.models.tasks import Layout
from ferry.transfer import cache, inference, modality
from ferry.transfer.loop import resolve_device
from ferry.transfer.records import Completion

PREDICTIONS = "predictions.json"


def evaluate(cfg: FerryConfig, model_dir: Path, split_dir: Path,
             prefix: str) -> tuple[dict[str, float], list[Path]]:
    """Score the exported model folder (exactly what gets registered) on the test split.

    The scores of a given exported model on a given split never change, so they are kept
    beside the model and reused by a re-run.
    """
    out_dir = evaluation_dir(model_dir, prefix)
    saved = out_dir / "metrics.json"
    if saved.is_file() and (out_dir / PREDICTIONS).is_file():
        record = json.loads(saved.read_text(encoding="utf-8"))
        if record.get("split_dir") == str(split_dir) and record.get("model_mtime") == \
                (model_dir / "model.safetensors").stat().st_mtime_ns:
            return record["metrics"], [out_dir / name for name in record["artifacts"]]
    targets, probs, layout = test_probabilities(cfg, model_dir, split_dir)
    out = task_metrics.scores(layout, targets, probs, prefix + "test_")
    artifacts = task_metrics.write_artifacts(layout, targets, probs, out_dir)
    _write_json(out_dir / PREDICTIONS, task_metrics.predictions(layout, targets, probs))
    _write_json(saved, {"split_dir": str(split_dir), "metrics": out,
                        "model_mtime": (model_dir / "model.safetensors").stat().st_mtime_ns,
                        "artifacts": [a.name for a in artifacts]})
    return out, artifacts


def test_probabilities(cfg: FerryConfig, model_dir: Path, split_dir: Path):
    """(targets, per-task probabilities, the model's task layout) of an exported model folder
    on the test split: what evaluation and promotion both score (``task_metrics.scores``).
    The targets are encoded with the model's own tasks and label order."""
    mod = modality.of_folder(model_dir)
    model, processor, meta = mod.load(model_dir)
    layout = Layout.from_meta(meta, cfg.data.label_column)
    device = resolve_device(cfg.train.device)
    model.to(device)
    items, labels = cache.split_labels(split_dir, cfg, ("test",), layout)["test"]
    data = mod.encode(processor, meta, items, labels)
    logits = inference.run(model, mod.batches(data, cfg.train.eval_batch_size, None, device),
                           len(data), device, desc="evaluate test")
    return data.labels.numpy(), layout.probabilities(logits), layout




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
