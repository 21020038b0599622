"""On-disk caches of tokenized splits and frozen-backbone features.

Tokenization runs once per data version and tokenizer; features once per backbone hash, data
version and preprocessing. Keys are content hashes, so a stale entry can never be picked up,
and files are written atomically so a killed run leaves no half-written entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ferry.config import FerryConfig
from ferry.data.splits import SPLITS, read_split
from ferry.files import content_key as key
from ferry.files import write_atomic
from ferry.transfer.batching import Encoded, encode


def _save(obj: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def split_labels(split_dir: Path, cfg: FerryConfig,
                 names: tuple[str, ...] = SPLITS) -> dict[str, tuple[list[str], list[int]]]:
    """(texts, label indices) per split, labels indexed by their position in data.labels."""
    index = {name: i for i, name in enumerate(cfg.data.labels)}
    out = {}
    for name in names:
        frame = read_split(split_dir, name)
        out[name] = (frame[cfg.data.text_column].tolist(),
                     [index[v.strip()] for v in frame[cfg.data.label_column]])
    return out


def encoded_splits(cfg: FerryConfig, tokenizer: Any, source_sha: str, split_dir: Path,
                   split_key: str) -> dict[str, Encoded]:
    """Tokenized splits, from the cache when this data version was tokenized before."""
    name = key(split=split_key, source=source_sha, max_length=cfg.model.max_length)
    path = Path(cfg.paths.cache) / "tokens" / f"{name}.pt"
    if path.is_file():
        raw = torch.load(path, weights_only=True)
        return {name: Encoded(**raw[name]) for name in SPLITS}
    data = split_labels(split_dir, cfg)
    encoded = {name: encode(tokenizer, texts, labels, cfg.model.max_length)
               for name, (texts, labels) in data.items()}
    _save({name: enc.to_dict() for name, enc in encoded.items()}, path)
    return encoded


def features_path(cfg: FerryConfig, source_sha: str, split_key: str) -> Path:
    """Where the frozen features of this backbone + data + preprocessing live."""
    return Path(cfg.paths.cache) / "features" / (
        key(split=split_key, source=source_sha, max_length=cfg.model.max_length,
            pooling=cfg.model.pooling) + ".pt")


def save_features(features: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    _save(features, path)
    return path


def load_features(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(path, weights_only=True)
