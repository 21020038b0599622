"""Frozen-backbone features, computed once per backbone hash, data version and preprocessing."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ferry.config import FerryConfig
from ferry.data.splits import SPLITS
from ferry.models import classifier
from ferry.models.sources import PretrainedSource
from ferry.transfer import cache, inference
from ferry.transfer.batching import text_batches
from ferry.transfer.loop import resolve_device


def ensure(cfg: FerryConfig, source: PretrainedSource, split_dir: str | Path,
           split_key: str) -> Path:
    """Path of the cached features of every split, extracting them if they are not there."""
    path = cache.features_path(cfg, source.sha256, split_key)
    if path.is_file():
        return path
    began = time.perf_counter()
    tokenizer = classifier.load_tokenizer(source.path)
    model = classifier.build(source.path, len(cfg.data.labels), cfg.model).eval()
    device = resolve_device(cfg.train.device)
    model.to(device)
    encoded = cache.encoded_splits(cfg, tokenizer, source.sha256, Path(split_dir), split_key)
    out = {}
    for name in SPLITS:
        enc = encoded[name]
        feats = inference.run(lambda b: model.features(b["input_ids"], b["attention_mask"]),
                              text_batches(enc, cfg.train.eval_batch_size, None), len(enc),
                              device, desc=f"features {name}")
        out[name] = {"features": feats.to(torch.float32), "labels": enc.labels}
    out["seconds"] = {"extraction": torch.tensor(time.perf_counter() - began)}
    return cache.save_features(out, path)


def extraction_seconds(path: Path) -> float:
    """How long the cached features took to extract (part of a probe's real cost)."""
    feats = cache.load_features(path)
    return float(feats.get("seconds", {}).get("extraction", 0.0))


def embed_texts(cfg: FerryConfig, source: PretrainedSource, texts: list[str]) -> torch.Tensor:
    """Pooled pretrained-backbone embeddings of ``texts`` (what domain shift is measured on)."""
    from ferry.transfer.batching import encode

    tokenizer = classifier.load_tokenizer(source.path)
    model = classifier.build(source.path, len(cfg.data.labels), cfg.model).eval()
    device = resolve_device(cfg.train.device)
    model.to(device)
    enc = encode(tokenizer, texts, [0] * len(texts), cfg.model.max_length)
    return inference.run(lambda b: model.features(b["input_ids"], b["attention_mask"]),
                         text_batches(enc, cfg.train.eval_batch_size, None), len(enc),
                         device).float()
