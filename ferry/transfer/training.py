"""Fine-tune and evaluate: wires a strategy, the batches and the loop for one model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ferry.config import FerryConfig
from ferry.errors import CheckpointError
from ferry.evaluation import metrics
from ferry.files import write_atomic
from ferry.models import classifier
from ferry.models.sources import PretrainedSource
from ferry.transfer import cache, inference, strategies
from ferry.transfer.batching import encode, feature_batches, text_batches
from ferry.transfer.checkpoint import Checkpointer, identity_key
from ferry.transfer.loop import fit, resolve_device

EPOCH_KEYS = ("val_accuracy", "val_macro_f1", "val_loss")
DONE = "complete.json"


@dataclass
class Outcome:
    model_dir: Path
    strategy: str
    best_epoch: int
    best_metric: float
    resumed_from: int
    seconds: float


def _identity(cfg: FerryConfig, source: PretrainedSource, split_key: str, role: str) -> dict:
    """What a resumable checkpoint must match: everything that changes the trained weights."""
    return {"role": role, "data": split_key, "source": source.sha256,
            "model": cfg.model.model_dump(mode="json"),
            "strategy": cfg.strategy.model_dump(mode="json") if role == "transfer" else role,
            "train": cfg.train.model_dump(mode="json", exclude={"resume", "log_every", "device"}),
            "labels": cfg.data.labels}


def train(cfg: FerryConfig, source: PretrainedSource, split_dir: Path, split_key: str,
          features_file: Path | None, role: str,
          on_epoch: Callable[[int, dict], None] | None) -> Outcome:
    """Train one model (the configured strategy, or the scratch baseline) and save it."""
    policy = strategies.Scratch() if role == "scratch" else strategies.from_config(cfg.strategy)
    identity = _identity(cfg, source, split_key, role)
    folder = Path(cfg.paths.checkpoints) / f"{role}-{identity_key(identity)}"
    if not cfg.train.resume and folder.exists():
        shutil.rmtree(folder)
    if (done := _finished(folder, identity_key(identity), on_epoch)) is not None:
        return done
    torch.manual_seed(cfg.train.seed)
    tokenizer = classifier.load_tokenizer(source.path)
    model = classifier.build(source.path, len(cfg.data.labels), cfg.model,
                             pretrained=role != "scratch")
    groups = policy.configure(model, policy.budget(cfg.train, cfg.strategy).lr,
                              cfg.train.weight_decay)
    ckpt = Checkpointer(folder, identity)
    device = resolve_device(cfg.train.device)
    if policy.cached_features:
        if features_file is None or not features_file.is_file():  # cache entry was removed
            from ferry.transfer import features

            features_file = features.ensure(cfg, source, split_dir, split_key)
        feats = cache.load_features(features_file)
        net, batches, steps, validate = _setup(
            model.head, lambda split, bs, seed: feature_batches(
                feats[split]["features"], feats[split]["labels"], bs, seed),
            len(feats["train"]["labels"]), feats["validation"]["labels"], cfg, device)
    else:
        enc = cache.encoded_splits(cfg, tokenizer, source.sha256, split_dir, split_key)
        net, batches, steps, validate = _setup(
            model, lambda split, bs, seed: text_batches(enc[split], bs, seed),
            len(enc["train"]), enc["validation"].labels, cfg, device)
    budget = policy.budget(cfg.train, cfg.strategy)
    hooks = BoundPolicy(policy, model, budget.lr, cfg.train.weight_decay)
    result = fit(net, groups, batches, steps, validate, budget, ckpt,
                 {"config": cfg.to_yaml()}, on_epoch, hooks=hooks)
    model.cpu()
    out = classifier.save(model, tokenizer, cfg.data.labels, cfg.model, folder / "model")
    outcome = Outcome(out, policy.name, result.best_epoch, result.best_metric,
                      result.resumed_from, result.seconds)
    _write_json(folder / DONE, {"key": identity_key(identity), "strategy": policy.name,
                                "best_epoch": result.best_epoch,
                                "best_metric": result.best_metric, "seconds": result.seconds,
                                "history": result.history})
    return outcome


@dataclass
class BoundPolicy:
    """A strategy bound to its model and LR: the loop's per-epoch and checkpoint hooks."""

    policy: strategies.Strategy
    model: torch.nn.Module
    lr: float
    weight_decay: float

    def start_epoch(self, epoch: int) -> list[dict]:
        return self.policy.start_epoch(epoch, self.model, self.lr, self.weight_decay)

    def restore(self, state: dict) -> list[dict]:
        """Replay the checkpoint's unfreezing and check the trainable set matches it."""
        groups = self.policy.restore(state, self.model, self.lr, self.weight_decay)
        if "trainable" in state and self.state()["trainable"] != state["trainable"]:
            raise CheckpointError("the checkpoint's trainable parameters differ from what "
                                  f"strategy {self.policy.name!r} restores; refusing to resume")
        return groups

    def state(self) -> dict:
        return self.policy.state(self.model)


def _finished(folder: Path, key: str,
              on_epoch: Callable[[int, dict], None] | None) -> Outcome | None:
    """A completed training of the same identity: reuse its exported model, train nothing.

    Its per-epoch history is replayed to ``on_epoch`` so the new run still shows the curves.
    """
    marker = folder / DONE
    if not marker.is_file() or not (folder / "model" / "model.safetensors").is_file():
        return None
    done = json.loads(marker.read_text(encoding="utf-8"))
    if done.get("key") != key or "history" not in done:
        return None
    for record in done["history"]:
        if on_epoch:
            on_epoch(int(record["epoch"]), record)
    return Outcome(folder / "model", done["strategy"], done["best_epoch"], done["best_metric"],
                   len(done["history"]), 0.0)


def _write_json(path: Path, data: dict) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2), encoding="utf-8"))


def _setup(net, make: Callable, n_train: int, val_labels: torch.Tensor, cfg: FerryConfig,
           device: torch.device):
    """The loop's inputs from one batch factory ``make(split, batch_size, seed)``."""
    bs, seed = cfg.train.batch_size, cfg.train.seed

    def batches(epoch: int):
        return make("train", bs, seed * 1000 + epoch)

    def validate(model) -> dict[str, float]:
        model.eval()
        logits = inference.run(model, make("validation", cfg.train.eval_batch_size, None),
                               len(val_labels), device)
        return _val_scores(logits, val_labels, cfg.data.labels)

    return net, batches, -(-n_train // bs), validate


def _val_scores(logits: torch.Tensor, labels: torch.Tensor, names: list[str]) -> dict:
    probs = torch.softmax(logits, 1).numpy()
    scores = metrics.scores(labels.numpy(), probs, names, "val_")
    return {k: scores[k] for k in EPOCH_KEYS}


def evaluate(cfg: FerryConfig, model_dir: Path, split_dir: Path,
             prefix: str) -> tuple[dict[str, float], list[Path]]:
    """Score the exported model folder (exactly what gets registered) on the test split.

    The scores of a given exported model on a given split never change, so they are kept
    beside the model and reused by a re-run.
    """
    out_dir = model_dir.parent / f"evaluation-{prefix}test"
    saved = out_dir / "metrics.json"
    if saved.is_file():
        record = json.loads(saved.read_text(encoding="utf-8"))
        if record.get("split_dir") == str(split_dir) and record.get("model_mtime") == \
                (model_dir / "model.safetensors").stat().st_mtime_ns:
            return record["metrics"], [out_dir / name for name in record["artifacts"]]
    model, tokenizer, meta = classifier.load(model_dir)
    device = resolve_device(cfg.train.device)
    model.to(device)
    texts, labels = cache.split_labels(split_dir, cfg, ("test",))["test"]
    enc = encode(tokenizer, texts, labels, meta["max_length"])
    logits = inference.run(model, text_batches(enc, cfg.train.eval_batch_size, None), len(enc),
                           device, desc="evaluate test")
    probs = torch.softmax(logits, 1).numpy()
    out = metrics.scores(enc.labels.numpy(), probs, meta["labels"], prefix + "test_")
    artifacts = metrics.write_artifacts(enc.labels.numpy(), probs, meta["labels"], out_dir)
    _write_json(saved, {"split_dir": str(split_dir), "metrics": out,
                        "model_mtime": (model_dir / "model.safetensors").stat().st_mtime_ns,
                        "artifacts": [a.name for a in artifacts]})
    return out, artifacts
