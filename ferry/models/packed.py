"""The model side of padding-free batches: attention inside each text, pooling per text.

A packed batch (``ferry.transfer.packing``) is rows of real tokens with ``position_ids``
restarting at every text and ``seq`` naming each token's text. The encoder gets explicit
position ids (learned absolute positions then match the padded run's) and a 4-D boolean
mask that lets a token see only tokens of its own text, causal too for decoders. This is the
one attention path every transformers backbone with a 4-D-mask API takes through SDPA (no
flash-attn wheel, no per-family code); its cost is attention over each whole packed row
(128 tokens), small beside the matmuls the removed pad tokens saved
(docs/performance.md has the measurement and the reasons for not using nested tensors).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn


def _encoder(model: nn.Module) -> nn.Module | None:
    """The transformers model under a text classifier (under peft's wrapper for LoRA)."""
    encoder = getattr(model, "encoder", None) if hasattr(model, "pooling") else None
    base = getattr(encoder, "get_base_model", None)
    return base() if callable(base) else encoder


def supports(model: nn.Module) -> bool:
    """Whether ``model`` is a text classifier whose encoder takes ``position_ids`` and a
    4-D mask through SDPA or eager attention (what the packed forward needs)."""
    encoder = _encoder(model)
    if encoder is None:
        return False
    config = getattr(encoder, "config", None)
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if getattr(config, "position_embedding_type", "absolute") not in ("absolute", None):
        return False  # relative position embeddings see the whole row
    forward = getattr(encoder, "forward", None)
    return forward is not None and "position_ids" in inspect.signature(forward).parameters


def causal(encoder: nn.Module) -> bool:
    """Whether the encoder's attention is causal (GPT-2-style decoders): a 4-D mask replaces
    the causal one transformers would build, so it must carry causality itself."""
    return any(getattr(m, "is_causal", False) is True for m in encoder.modules())


def mask(seq: torch.Tensor, is_causal: bool) -> torch.Tensor:
    """R x 1 x S x S booleans: True where a token may attend (same text, and not ahead)."""
    allowed = seq[:, :, None] == seq[:, None, :]
    if is_causal:
        allowed = allowed & torch.ones_like(allowed[0]).tril()
    return allowed[:, None]


def features(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Pooled features per text of a packed batch, equal (within float tolerance) to the
    padded batch's: mean over each text's tokens, or its first token (``cls``)."""
    base = _encoder(model)
    ids, seq = batch["input_ids"], batch["seq"]
    kwargs = {"input_ids": ids, "position_ids": batch["position_ids"],
              "attention_mask": mask(seq, causal(base))}
    if hasattr(getattr(base, "embeddings", None), "token_type_embeddings"):
        kwargs["token_type_ids"] = torch.zeros_like(ids)  # (GPT-2 would embed explicit ones)
    states = model.encoder(**kwargs).last_hidden_state
    states, seq = states.reshape(-1, states.shape[-1]), seq.reshape(-1)
    n = len(batch["starts"])
    if model.pooling == "cls":
        return states[batch["starts"]]
    sums = states.new_zeros(n + 1, states.shape[-1]).index_add_(0, seq, states)
    counts = states.new_zeros(n + 1).index_add_(0, seq, states.new_ones(len(seq)))  # no sync
    return (sums / counts.clamp(min=1)[:, None])[:n]
