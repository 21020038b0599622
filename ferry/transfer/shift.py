"""Domain shift of text datasets, measured on pretrained-backbone embeddings.

Between the train and test splits of a run (logged on every run), and between two DVC
revisions of a dataset (``ferry shift``). Samples are capped at ``shift.max_samples`` per side
(seeded), which keeps the kernel matrix small and the test fast; results are cached by the
texts' content, the backbone hash and the settings.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from ferry.config import FerryConfig
from ferry.evaluation.shift import ShiftResult, mmd_test
from ferry.files import content_key, write_atomic
from ferry.models.sources import PretrainedSource


def sample(texts: list[str], cap: int, seed: int) -> list[str]:
    """At most ``cap`` texts, drawn without replacement with a fixed seed."""
    if len(texts) <= cap:
        return list(texts)
    return random.Random(seed).sample(list(texts), cap)


def _items_key(cfg: FerryConfig, items: list[str]) -> str:
    """Texts by content; image paths by path, size and mtime (their bytes can change)."""
    if cfg.data.modality == "text":
        return content_key(t=items)
    stats = [(p, Path(p).stat().st_size, Path(p).stat().st_mtime_ns) for p in items]
    return content_key(t=stats)


def between(cfg: FerryConfig, source: PretrainedSource, a: list[str],
            b: list[str]) -> ShiftResult:
    """MMD^2 and permutation p-value between two sets of texts (cached)."""
    from ferry.transfer.features import embed_texts

    opts = cfg.shift
    a, b = sample(a, opts.max_samples, opts.seed), sample(b, opts.max_samples, opts.seed + 1)
    key = content_key(a=_items_key(cfg, a), b=_items_key(cfg, b), source=source.sha256,
                      opts=opts.model_dump(), model=cfg.model.model_dump(mode="json"),
                      size=cfg.data.image.size if cfg.data.modality == "image" else None)
    path = Path(cfg.paths.cache) / "shift" / f"{key}.json"
    if path.is_file():
        return ShiftResult(**json.loads(path.read_text(encoding="utf-8")))
    emb = embed_texts(cfg, source, a + b).numpy()
    result = mmd_test(emb[: len(a)], emb[len(a):], opts.permutations, opts.seed)
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(result.as_dict()), encoding="utf-8"))
    return result
