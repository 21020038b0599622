"""Frozen-backbone features, computed once per backbone hash, data version and preprocessing."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from ferry.config import FerryConfig
from ferry.data.splits import SPLITS
from ferry.models.meta import ModelMeta
from ferry.models.sources import PretrainedSource
from ferry.transfer import cache, inference, long_text, modality, strategies
from ferry.transfer.runtime import resolve_device


class Backbone:
    """The frozen pretrained encoder and its processor, ready to embed a split (either
    modality)."""

    def __init__(self, cfg: FerryConfig, source: PretrainedSource) -> None:
        self.cfg = cfg
        self.mod = modality.of(cfg, source)
        self.source = source
        self.tokenizer = self.mod.processor(source)
        self.model = self.mod.build(cfg, source, pretrained=True).eval()
        self.device = resolve_device(cfg.train.device)
        self.model.to(self.device)

    def embed(self, data, desc: str | None = None) -> torch.Tensor:
        """Pooled features of every example, in their original order (float32)."""
        return inference.run(
            self.model.embed, self.mod.batches(data, self.cfg.train.eval_batch_size, None,
                                               self.device),
            len(data), self.device, desc=desc).float()

    def encode(self, items: list[str]):
        """Raw texts or image paths as the model's input."""
        meta = ModelMeta(labels=list(self.cfg.data.labels), max_length=self.cfg.model.max_length,
                         size=self.cfg.data.image.size, **long_text.meta_fields(self.cfg))
        return self.mod.encode(self.tokenizer, meta, items, [0] * len(items))


def ensure(cfg: FerryConfig, source: PretrainedSource, split_dir: str | Path,
           split_key: str) -> Path:
    """Path of the cached features of every split, extracting them if they are not there
    (of every text's pooled windows when ``data.long_text`` resolves to ``chunk``)."""
    cfg, _ = long_text.resolve(cfg, source, Path(split_dir), split_key,
                               strategies.from_config(cfg.strategy))
    path = cache.features_path(cfg, source.sha256, split_key)
    if path.is_file():
        return path
    began = time.perf_counter()
    backbone = Backbone(cfg, source)
    encoded = backbone.mod.splits(cfg, backbone.tokenizer, source, Path(split_dir), split_key)
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
    """Pooled pretrained-backbone embeddings of texts or image paths (what domain shift is
    measured on)."""
    backbone = Backbone(cfg, source)
    return backbone.embed(backbone.encode(texts))
