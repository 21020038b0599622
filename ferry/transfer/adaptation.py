"""Domain adaptation: align the pooled features of labelled (source) and unlabelled target texts.

Each training step also embeds a batch of target texts and adds ``weight * MMD^2`` between the
two batches' features (multi-bandwidth RBF kernel around the median distance) to the
cross-entropy, pulling the backbone towards features that do not tell the domains apart
(Long et al., DAN). Target texts are unlabelled: only their text column is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ferry.config import FerryConfig
from ferry.transfer.batching import Encoded, collate, encode
from ferry.transfer.loop import LossFn, to_device

BANDWIDTH_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)


def mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Biased MMD^2 estimate between two feature batches (differentiable)."""
    z = torch.cat([x, y]).float()
    d2 = torch.cdist(z, z).pow(2)
    scale = d2.detach().median().clamp(min=1e-6)
    k = sum(torch.exp(-d2 / (scale * f)) for f in BANDWIDTH_FACTORS)
    n = len(x)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def target_texts(path: Path, column: str) -> list[str]:
    """The unlabelled target texts (read with the same checks as the labelled data)."""
    from ferry.data.loading import read_table

    frame = read_table(path, [column])
    return [str(t) for t in frame[column].tolist() if str(t).strip()]


def _cycle(enc: Encoded, batch_size: int, seed: int) -> Iterator[dict]:
    gen = torch.Generator().manual_seed(seed)
    while True:
        for index in torch.split(torch.randperm(len(enc), generator=gen), batch_size):
            yield collate(enc, index)


def mmd_loss(cfg: FerryConfig, tokenizer: Any, device: torch.device) -> LossFn:
    """Cross-entropy + weight * MMD^2(source features, target features), per batch."""
    texts = target_texts(Path(cfg.adaptation.target_path), cfg.adaptation.text_column)
    batches = _cycle(encode(tokenizer, texts, [0] * len(texts), cfg.model.max_length),
                     cfg.train.batch_size, cfg.train.seed)
    weight = cfg.adaptation.weight

    def loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        source = model.features(batch["input_ids"], batch["attention_mask"])
        logits = model.head({"features": source})
        target = to_device(next(batches), device)
        align = mmd2(source, model.features(target["input_ids"], target["attention_mask"]))
        ce = nn.functional.cross_entropy(logits.float(), batch["labels"])
        return ce + weight * align, align

    return loss
