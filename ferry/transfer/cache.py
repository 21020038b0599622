"""On-disk caches of tokenized (or decoded) splits and frozen-backbone features.

Tokenization (image decoding) runs once per data version and tokenizer (input size); features
once per backbone hash, data version and preprocessing. Keys are content hashes, so a stale
entry can never be picked up, and files are written atomically so a killed run leaves no
half-written entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ferry.config import FerryConfig
from ferry.data.splits import SPLITS, read_split
from ferry.files import content_key as key
from ferry.files import write_atomic
from ferry.models.tasks import Layout, layout_of
from ferry.transfer.batching import Encoded, Pixels, encode
from ferry.transfer.chunking import Chunked
from ferry.transfer.chunking import encode as chunk_encode


def _save(obj: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: torch.save(obj, tmp))


def split_labels(split_dir: Path, cfg: FerryConfig, names: tuple[str, ...] = SPLITS,
                 layout: Layout | None = None) -> dict[str, tuple[list[str], Any]]:
    """(texts or image paths, targets) per split: label positions in data.labels, or the
    targets of several tasks / multi-label (``Layout.encode``)."""
    layout = layout or layout_of(cfg)
    column = cfg.data.text_column if cfg.data.modality == "text" else cfg.data.path_column
    out = {}
    for name in names:
        frame = read_split(split_dir, name)
        out[name] = (frame[column].tolist(), layout.encode(frame, f"{name} split: "))
    return out


def encoded_splits(cfg: FerryConfig, tokenizer: Any, source_sha: str, split_dir: Path,
                   split_key: str) -> dict[str, Encoded | Chunked]:
    """Tokenized splits, from the cache when this data version was tokenized before:
    truncated, or as windows when ``data.long_text`` resolved to ``chunk``."""
    chunk = _chunking(cfg)
    name = key(split=split_key, source=source_sha, max_length=cfg.model.max_length, **chunk,
               **layout_of(cfg).key())
    path = Path(cfg.paths.cache) / "tokens" / f"{name}.pt"
    kind = Chunked.from_dict if chunk else (lambda raw: Encoded(**raw))
    if path.is_file():
        raw = torch.load(path, weights_only=True)
        return {name: kind(raw[name]) for name in SPLITS}
    data = split_labels(split_dir, cfg)
    if chunk:
        encoded = {name: chunk_encode(tokenizer, texts, labels, cfg.model.max_length,
                                      cfg.data.chunk.overlap, cfg.data.chunk.max_windows)
                   for name, (texts, labels) in data.items()}
    else:
        encoded = {name: encode(tokenizer, texts, labels, cfg.model.max_length)
                   for name, (texts, labels) in data.items()}
    _save({name: enc.to_dict() for name, enc in encoded.items()}, path)
    return encoded


def _chunking(cfg: FerryConfig) -> dict[str, Any]:
    """What a chunked encoding adds to cache keys (nothing for truncated texts, so their
    entries keep their keys)."""
    if cfg.data.modality != "text" or cfg.data.long_text != "chunk":
        return {}
    return {"chunk": cfg.data.chunk.model_dump(mode="json")}


def pixel_splits(cfg: FerryConfig, split_dir: Path, split_key: str) -> dict[str, Pixels]:
    """Decoded, resized images of every split as uint8 tensors (decoded once per version)."""
    from ferry.data.images import load_pixels

    name = key(split=split_key, size=cfg.data.image.size, **layout_of(cfg).key())
    path = Path(cfg.paths.cache) / "pixels" / f"{name}.pt"
    if path.is_file():
        raw = torch.load(path, weights_only=True)
        return {name: Pixels(**raw[name]) for name in SPLITS}
    data = {name: Pixels(torch.from_numpy(load_pixels(paths, cfg.data.image.size)),
                         torch.tensor(labels, dtype=torch.int64))
            for name, (paths, labels) in split_labels(split_dir, cfg).items()}
    _save({name: {"pixels": d.pixels, "labels": d.labels} for name, d in data.items()}, path)
    return data


def features_path(cfg: FerryConfig, source_sha: str, split_key: str) -> Path:
    """Where the frozen features of this backbone + data + preprocessing live."""
    return Path(cfg.paths.cache) / "features" / (
        key(split=split_key, source=source_sha, max_length=cfg.model.max_length,
            pooling=cfg.model.pooling, **_long_text(cfg),
            size=cfg.data.image.size if cfg.data.modality == "image" else None,
            **layout_of(cfg).key()) + ".pt")


def _long_text(cfg: FerryConfig) -> dict[str, Any]:
    """Feature-key part of ``data.long_text``: none when truncating; the setting (``auto``
    before it is resolved) and the windows otherwise."""
    if cfg.data.modality != "text" or cfg.data.long_text == "truncate":
        return {}
    return {"long_text": cfg.data.long_text, "chunk": cfg.data.chunk.model_dump(mode="json")}


def save_features(features: dict[str, dict[str, torch.Tensor]], path: Path) -> Path:
    _save(features, path)
    return path


def load_features(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    return torch.load(path, weights_only=True)
