"""Zero-shot classification: label prototypes from descriptions, no training at all.

Each label's description(s) are embedded with the pretrained backbone; their mean, L2-normalised,
becomes that label's row of the head, and the head normalises text embeddings too, so a logit is
``scale * cosine(text, prototype)``. The result is an ordinary Ferry model folder: it is scored,
registered and served exactly like a fine-tuned one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ferry.models.classifier import TextClassifier
from ferry.transfer import inference
from ferry.transfer.batching import encode, text_batches


def init_head(model: TextClassifier, tokenizer: Any, labels: list[str],
              descriptions: dict[str, list[str]], max_length: int, scale: float,
              device: torch.device, normalize: bool = True) -> None:
    """Write the label prototypes into ``model.head`` (in place).

    ``normalize=False`` keeps the plain linear head (the architecture every strategy shares)
    and only initialises it: prototypes divided by the typical embedding norm, so the first
    logits are about ``scale * cosine`` and fine-tuning starts from the zero-shot classifier.
    """
    phrases = [descriptions.get(label) or [label] for label in labels]
    flat = [text for group in phrases for text in group]
    enc = encode(tokenizer, flat, [0] * len(flat), max_length)
    model.to(device).eval()
    emb = inference.run(lambda b: model.features(b["input_ids"], b["attention_mask"]),
                        text_batches(enc, 64, None), len(enc), device)
    norm = float(emb.float().norm(dim=-1).mean())
    emb = nn.functional.normalize(emb.float(), dim=-1)
    rows, start = [], 0
    for group in phrases:
        rows.append(emb[start:start + len(group)].mean(0))
        start += len(group)
    protos = nn.functional.normalize(torch.stack(rows), dim=-1)
    with torch.no_grad():
        model.head.linear.weight.copy_(protos * scale / (1.0 if normalize else norm))
        model.head.linear.bias.zero_()
    model.head.normalize = normalize
