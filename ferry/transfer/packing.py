"""Padding-free training batches (``train.packing``): a batch's texts, packed into rows.

A padded batch of short, mixed-length texts spends part of every matmul on pad tokens. A
packed batch is the same texts (same order, same ``train.batch_size``, so the same schedule
and the same learning) laid end to end in rows of ``row_size`` tokens (128 for the usual
short texts); the model keeps attention inside each text and pools per text
(``ferry.models.packed``). Rows rather than one long row keep attention's cost bounded: it
is computed per row, so the masked-out work is at most a row's, not the whole batch's. The
texts stay the unit of the batch (labels, DDP shares, compile's padded rows), so packing
happens last, per process, on host-side lengths: building a packed batch never waits for
the GPU. On a GPU the row count is rounded to a coarse bucket (``bucket``) so a compiled
graph sees a bounded set of shapes; leftover places are filler that belongs to no text.
"""

from __future__ import annotations

import torch

from ferry.config import TrainConfig

ROW = 128  # tokens per packed row: attention works on rows, so its waste is bounded by them


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


def row_size(longest: int) -> int:
    """Tokens per packed row: 128, or the power of two that holds the longest text (a batch
    with fewer tokens in all is one row of just those, ``flatten``)."""
    return max(ROW, 1 << max(longest - 1, 1).bit_length())


def places(lengths: list[int], row: int) -> list[tuple[int, int]]:
    """(row, offset) of each text, longest first into the first row with room (first-fit
    decreasing: rows end nearly full, texts never split)."""
    free: list[int] = []
    out = [(0, 0)] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        r = next((k for k, room in enumerate(free) if room >= lengths[i]), len(free))
        if r == len(free):
            free.append(row)
        out[i] = (r, row - free[r])
        free[r] -= lengths[i]
    return out


def flatten(batch: dict, multiple: int = 1) -> dict:
    """The packed form of a padded text batch that carries host-side ``lengths``.

    ``input_ids``/``position_ids`` (R x S): the real tokens packed into rows of ``row_size``,
    each at its position inside its text; ``seq`` (R x S): which text a token belongs to
    (filler: ``len(texts)``); ``starts``: each text's first token in the flattened rows.
    Batches without ``lengths`` (chunked texts, images, features) pass through.
    """
    lengths = batch.get("lengths")
    if lengths is None or "doc" in batch:
        return batch
    lengths = lengths.cpu().long()
    n, width = batch["input_ids"].shape
    size = min(row_size(int(lengths.max())), bucket(int(lengths.sum()), multiple))
    where = places(lengths.tolist(), size)
    n_rows = bucket(max(r for r, _ in where) + 1, 1) if multiple > 1 else \
        max(r for r, _ in where) + 1
    starts = torch.tensor([r * size + o for r, o in where], dtype=torch.int64)
    first = torch.zeros(n, dtype=torch.int64)
    first[1:] = torch.cumsum(lengths, 0)[:-1]
    texts = torch.repeat_interleave(torch.arange(n), lengths)
    cols = torch.arange(int(lengths.sum())) - torch.repeat_interleave(first, lengths)
    dest = torch.repeat_interleave(starts, lengths) + cols
    src = torch.zeros(n_rows * size, dtype=torch.int64)
    src[dest] = texts * width + cols
    seq = torch.full((n_rows * size,), n, dtype=torch.int64)
    seq[dest] = texts
    pos = torch.zeros(n_rows * size, dtype=torch.int64)
    pos[dest] = cols
    device = batch["input_ids"].device
    ids = batch["input_ids"].reshape(-1)[src.to(device, non_blocking=True)]
    out = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "lengths")}
    return {**out, "input_ids": ids.view(n_rows, size), "position_ids": pos.view(n_rows, size),
            "seq": seq.view(n_rows, size), "starts": starts}
