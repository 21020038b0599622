"""Padding-free training batches (``train.packing``): a batch's texts, flattened.

A padded batch of short, mixed-length texts spends part of every matmul on pad tokens. A
packed batch is the same rows (same order, same ``train.batch_size``, so the same schedule
and the same learning) laid end to end as one row of real tokens; the model keeps attention
inside each text and pools per text (``ferry.models.packed``). The rows stay the unit of the
batch (labels, DDP shares, compile's padded rows), so packing happens last, per process, on
host-side lengths: building a packed batch never waits for the GPU.

The token count is rounded up to a coarse bucket (at most ~8 sizes per doubling) so that a
compiled graph sees a bounded set of shapes; the tail is filler that attends only to itself
and belongs to no text.
"""

from __future__ import annotations

import torch

from ferry.config import TrainConfig


def enabled(cfg: TrainConfig, model: torch.nn.Module, device: torch.device,
            custom_loss: bool) -> bool:
    """``train.packing`` for this model: ``auto`` packs on a GPU, ``on`` everywhere, both
    only for a text backbone that takes packed input (``packed.supports``) and the plain
    loss (a custom loss, domain adaptation, calls the model's parts on padded batches)."""
    if cfg.packing == "off" or custom_loss:
        return False
    from ferry.models.packed import supports

    if not supports(model):
        return False
    return cfg.packing == "on" or device.type == "cuda"


def bucket(tokens: int, multiple: int) -> int:
    """``tokens`` rounded up to ``multiple`` and to an eighth of the power of two below it
    (at most 12.5% filler, about eight sizes per doubling)."""
    step = max(multiple, (1 << (max(tokens, 1).bit_length() - 1)) // 8)
    return -(-tokens // step) * step


def flatten(batch: dict, multiple: int = 1) -> dict:
    """The packed form of a padded text batch that carries host-side ``lengths``.

    ``input_ids``/``position_ids``/``seq`` (1 x T): the real tokens, their position inside
    their text, and which row they belong to (filler: ``len(rows)``); ``starts``: each row's
    first token. Batches without ``lengths`` (chunked texts, images, features) pass through.
    """
    lengths = batch.get("lengths")
    if lengths is None or "doc" in batch:
        return batch
    lengths = lengths.cpu().long()
    n, width = batch["input_ids"].shape
    total = int(lengths.sum())
    size = bucket(total, multiple)
    rows = torch.repeat_interleave(torch.arange(n), lengths)
    starts = torch.zeros(n, dtype=torch.int64)
    starts[1:] = torch.cumsum(lengths, 0)[:-1]
    cols = torch.arange(total) - torch.repeat_interleave(starts, lengths)
    fill = size - total
    flat = torch.cat([rows * width + cols, torch.zeros(fill, dtype=torch.int64)])
    seq = torch.cat([rows, torch.full((fill,), n, dtype=torch.int64)])
    pos = torch.cat([cols, torch.zeros(fill, dtype=torch.int64)])
    device = batch["input_ids"].device
    ids = batch["input_ids"].reshape(-1)[flat.to(device, non_blocking=True)]
    out = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "lengths")}
    return {**out, "input_ids": ids[None], "position_ids": pos[None], "seq": seq,
            "starts": starts}
