"""Which way one training reads long texts (``data.long_text``), decided once and recorded.

``auto`` becomes ``chunk`` or ``truncate`` here, from how many training texts the tokenizer
would cut at ``model.max_length``; the decision, its reason and the cut figures of the training
and test splits go to the run (``data.*`` metrics, the ``data.long_text`` tag) and the mode into
the exported model's metadata. Where windows cannot apply, the run truncates and says why:
domain adaptation (its alignment loss compares single-window features of the target texts) and
a torchrun fine-tune (its shards split batches by rows, and a chunked batch has more windows
than texts).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from statistics import mean
from typing import Any, Literal

from pydantic import BaseModel

from ferry.config import FerryConfig
from ferry.files import content_key, write_atomic
from ferry.models.sources import PretrainedSource
from ferry.transfer import chunking

log = logging.getLogger("ferry.transfer")
Mode = Literal["truncate", "chunk"]


class Plan(BaseModel):
    """The resolved mode, why, and the cut figures (``data.*`` metrics of the run)."""

    mode: Mode
    reason: str
    metrics: dict[str, float] = {}


def decide(setting: str, cut_share: float) -> tuple[Mode, str]:
    """``auto`` chunks iff more than a tenth of the training texts are cut (``AUTO_SHARE``)."""
    if setting in ("truncate", "chunk"):
        return setting, f"data.long_text: {setting}"  # type: ignore[return-value]
    if cut_share > chunking.AUTO_SHARE:
        return "chunk", (f"auto: {cut_share:.1%} of the training texts are longer than "
                         f"model.max_length (more than {chunking.AUTO_SHARE:.0%})")
    return "truncate", (f"auto: {cut_share:.1%} of the training texts are longer than "
                        f"model.max_length (at most {chunking.AUTO_SHARE:.0%})")


def cut_figures(lengths: list[int], body: int, overlap: int | None, max_windows: int,
                prefix: str) -> dict[str, float]:
    """How many texts truncation cuts and by how many tokens (mean over the cut ones), and how
    many windows chunking reads (and how many texts lose tokens even then: over
    ``max_windows``). An overlap too large for a window is only refused if chunking is
    chosen (``check``); the window figures then assume the largest one that fits."""
    overlap = min(chunking.window_overlap(body, overlap), body - 1)
    cut = [n - body for n in lengths if n > body]
    windows = [len(chunking.spans(n, body, overlap, 10**9)) for n in lengths]
    return {f"data.{prefix}texts_cut": float(len(cut)),
            f"data.{prefix}texts_cut_share": len(cut) / max(1, len(lengths)),
            f"data.{prefix}tokens_cut_mean": float(mean(cut)) if cut else 0.0,
            f"data.{prefix}windows_mean": float(mean(min(w, max_windows) for w in windows))
            if windows else 0.0,
            f"data.{prefix}texts_over_max_windows": float(sum(w > max_windows
                                                              for w in windows))}


def measure(cfg: FerryConfig, tokenizer: Any, source_sha: str, split_dir: Path,
            split_key: str) -> dict[str, float]:
    """The cut figures of the training and test splits (cached per data version, tokenizer
    and window settings: one tokenization of both splits)."""
    from ferry.transfer.cache import split_labels

    chunk = cfg.data.chunk
    name = content_key(split=split_key, source=source_sha, max_length=cfg.model.max_length,
                       overlap=chunk.overlap, max_windows=chunk.max_windows)
    path = Path(cfg.paths.cache) / "long_text" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    body = chunking.body_length(tokenizer, cfg.model.max_length)
    out: dict[str, float] = {}
    for split, prefix in (("train", ""), ("test", "test_")):
        texts, _ = split_labels(split_dir, cfg, (split,))[split]
        out |= cut_figures(chunking.text_lengths(tokenizer, [str(t) for t in texts]), body,
                           chunk.overlap, chunk.max_windows, prefix)
    text = json.dumps(out, indent=2)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return out


def blocker(cfg: FerryConfig, policy: Any) -> str | None:
    """Why windows cannot apply to this training, or None when they can."""
    backbone_trains = policy.trains and not policy.cached_features
    if cfg.adaptation.target_path and backbone_trains:
        return "domain adaptation aligns single-window features of the target texts"
    if cfg.distributed.world > 1 and backbone_trains:
        return "a torchrun fine-tune shards batches by rows (a chunked batch has more windows)"
    return None


def resolve(cfg: FerryConfig, source: PretrainedSource, split_dir: Path, split_key: str,
            policy: Any) -> tuple[FerryConfig, Plan | None]:
    """The config with ``data.long_text`` resolved to ``chunk`` or ``truncate`` (and, when
    chunking, ``train.compile`` off: a compiled step pads rows, which windows do not allow),
    and the plan to record; images are left as they are (None)."""
    if cfg.data.modality != "text":
        return cfg, None
    from ferry.models.classifier import load_tokenizer

    tokenizer = load_tokenizer(source.path, source.trust_remote_code)
    figures = measure(cfg, tokenizer, source.sha256, Path(split_dir), split_key)
    mode, reason = decide(cfg.data.long_text, figures["data.texts_cut_share"])
    if mode == "chunk" and (why := blocker(cfg, policy)) is not None:
        mode, reason = "truncate", f"{reason}; truncating instead: {why}"
        log.warning("long texts: %s", reason)
    if mode == "chunk":  # an overlap that leaves no room in a window: refused, named
        body = chunking.body_length(tokenizer, cfg.model.max_length)
        chunking.spans(0, body, chunking.window_overlap(body, cfg.data.chunk.overlap), 1)
    log.info("long texts: %s (%d of the training texts cut at %d tokens)", mode,
             int(figures["data.texts_cut"]), cfg.model.max_length)
    update: dict[str, Any] = {"data": cfg.data.model_copy(update={"long_text": mode})}
    if mode == "chunk":
        update["train"] = cfg.train.model_copy(update={"compile": "off"})
    return cfg.model_copy(update=update), Plan(mode=mode, reason=reason, metrics=figures)


def windows(cfg: FerryConfig) -> str | None:
    """The window pooling a model built for this (resolved) config has, None if it truncates."""
    return cfg.data.chunk.pooling if cfg.data.long_text == "chunk" else None


def identity(cfg: FerryConfig) -> dict:
    """What a chunked training adds to its checkpoint identity (nothing when truncating, so
    earlier truncated trainings stay reusable)."""
    if cfg.data.modality != "text" or cfg.data.long_text != "chunk":
        return {}
    return {"long_text": {"mode": "chunk", **cfg.data.chunk.model_dump(mode="json")}}


def meta_fields(cfg: FerryConfig) -> dict[str, Any]:
    """The exported model's record of how to encode a text (``ModelMeta``)."""
    if cfg.data.long_text != "chunk":
        return {"long_text": "truncate"}
    chunk = cfg.data.chunk
    return {"long_text": "chunk", "chunk_overlap": chunk.overlap,
            "chunk_max_windows": chunk.max_windows, "window_pooling": chunk.pooling}
