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
from ferry.transfer.batching import Encoded, encode, pad_multiple, text_batches
from ferry.transfer.loop import resolve_device


class Backbone:
    """The frozen pretrained encoder and its tokenizer, ready to embed encoded texts."""

    def __init__(self, cfg: FerryConfig, source: PretrainedSource) -> None:
        self.cfg = cfg
        self.tokenizer = classifier.load_tokenizer(source.path)
        self.model = classifier.build(source.path, len(cfg.data.labels), cfg.model).eval()
        self.device = resolve_device(cfg.train.device)
        self.model.to(self.device)

    def embed(self, enc: Encoded, desc: str | None = None) -> torch.Tensor:
        """Pooled features of every example, in their original order (float32)."""
        return inference.run(
            lambda b: self.model.features(b["input_ids"], b["attention_mask"]),
            text_batches(enc, self.cfg.train.eval_batch_size, None, pad_multiple(
                self.device.type)), len(enc), self.device, desc=desc).float()


def ensure(cfg: FerryConfig, source: PretrainedSource, split_dir: str | Path,
           split_key: str) -> Path:
    """Path of the cached features of every split, extracting them if they are not there."""
    path = cache.features_path(cfg, source.sha256, split_key)
    if path.is_file():
        return path
    began = time.perf_counter()
    backbone = Backbone(cfg, source)
    encoded = cache.encoded_splits(cfg, backbone.tokenizer, source.sha256, Path(split_dir),
                                   split_key)
    out: dict[str, dict[str, torch.Tensor]] = {
        name: {"features": backbone.embed(encoded[name], f"features {name}"),
               "labels": encoded[name].labels} for name in SPLITS}
    out["seconds"] = {"extraction": torch.tensor(time.perf_counter() - began)}
    return cache.save_features(out, path)


def extraction_seconds(path: Path) -> float:
    """How long the cached features took to extract (part of a probe's real cost)."""
    feats = cache.load_features(path)
    return float(feats.get("seconds", {}).get("extraction", 0.0))


def embed_texts(cfg: FerryConfig, source: PretrainedSource, texts: list[str]) -> torch.Tensor:
    """Pooled pretrained-backbone embeddings of ``texts`` (what domain shift is measured on)."""
    backbone = Backbone(cfg, source)
    return backbone.embed(encode(backbone.tokenizer, texts, [0] * len(texts),
                                 cfg.model.max_length))
