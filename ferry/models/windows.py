"""Pooling the windows of a chunked text into one representation (``data.long_text: chunk``).

A batch of chunked texts carries every window as a row and ``doc``, the text each window
belongs to. ``mean`` averages a text's windows; ``attention`` weights them by a learned score
(a linear layer on each window's features, softmax within the text), zero-initialised so it
starts as the mean and stays the mean where it does not train (a linear probe's frozen
features).
"""

from __future__ import annotations

import torch
from torch import nn


def pool(feats: torch.Tensor, doc: torch.Tensor, n_docs: int,
         scores: torch.Tensor | None = None) -> torch.Tensor:
    """``n_docs`` x hidden: the (score-weighted) mean of each text's window features."""
    if scores is None:
        weights = torch.ones(len(doc), device=feats.device, dtype=torch.float32)
    else:
        scores = scores.float()
        top = torch.full((n_docs,), -torch.inf, device=feats.device).scatter_reduce(
            0, doc, scores, "amax")
        weights = torch.exp(scores - top[doc])
    total = torch.zeros(n_docs, device=feats.device).index_add(0, doc, weights)
    weights = (weights / total[doc]).to(feats.dtype)
    out = torch.zeros((n_docs, feats.shape[1]), device=feats.device, dtype=feats.dtype)
    return out.index_add(0, doc, feats * weights[:, None])


class WindowAttention(nn.Module):
    """Learned weights over a text's windows (one score per window)."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.score = nn.Linear(hidden, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def forward(self, feats: torch.Tensor, doc: torch.Tensor, n_docs: int) -> torch.Tensor:
        return pool(feats, doc, n_docs, self.score(feats).squeeze(-1))
