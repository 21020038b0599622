"""Tokenize once, then batch with dynamic padding and length grouping.

The default texts average ~25 tokens; padding every batch to 128 would spend most of the
compute on pad tokens. Training batches are drawn from length-sorted chunks (shuffled within
and across chunks, seeded per epoch) and padded to their longest text (rounded up to a
multiple of 8 on a GPU).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

CHUNK_BATCHES = 50


@dataclass
class Encoded:
    """Token ids of one split, stored flat with offsets (compact to cache, cheap to slice)."""

    ids: torch.Tensor  # int32, all examples concatenated
    offsets: torch.Tensor  # int64, len N+1
    labels: torch.Tensor  # int64, len N
    pad_id: int

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    def __len__(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {"ids": self.ids, "offsets": self.offsets, "labels": self.labels,
                "pad_id": self.pad_id}


def encode(tokenizer: Any, texts: list[str], labels: list[int], max_length: int) -> Encoded:
    """Tokenize a split with the source's fast tokenizer, truncating at ``max_length``."""
    rows = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pack(rows, labels, int(pad))


def pack(rows: list[list[int]], labels: list[int], pad_id: int) -> Encoded:
    """Token id rows stored flat with offsets (truncated texts, or the windows of chunked ones)."""
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    offsets = torch.zeros(len(rows) + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    flat = torch.tensor([t for r in rows for t in r], dtype=torch.int32)
    return Encoded(flat, offsets, torch.tensor(labels, dtype=torch.int64), pad_id)


def collate(enc: Encoded, index: torch.Tensor, multiple: int = 8) -> dict[str, torch.Tensor]:
    """Pad the examples at ``index`` to their longest length rounded up to ``multiple``."""
    width = _round_up(int(enc.lengths[index].max()), multiple)
    ids = torch.full((len(index), width), enc.pad_id, dtype=torch.int64)
    mask = torch.zeros((len(index), width), dtype=torch.int64)
    for row, i in enumerate(index.tolist()):
        start, end = int(enc.offsets[i]), int(enc.offsets[i + 1])
        ids[row, : end - start] = enc.ids[start:end]
        mask[row, : end - start] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": enc.labels[index],
            "lengths": enc.lengths[index], "index": index}


@dataclass
class Resident:
    """A tokenized split padded once to its longest text and kept on the training device.

    Batches are then a row gather and a column slice on the device: no per-example Python
    collation, no host-to-device copy per step. The index order moves once per epoch and the
    batch widths come from host-side lengths, so assembling a batch never waits for the GPU.
    """

    ids: torch.Tensor  # N x L int32 on the device (half of int64; embeddings take either)
    lengths: torch.Tensor  # N, on the host (widths without a device sync)
    device_lengths: torch.Tensor  # N, on the device (masks)
    labels: torch.Tensor  # N, on the device

    @classmethod
    def of(cls, enc: Encoded, device: torch.device, multiple: int = 8) -> Resident:
        """Pad to the longest text rounded up to ``multiple`` (the widest batch's width)."""
        lengths = enc.lengths
        width = _round_up(max(1, int(lengths.max()) if len(lengths) else 1), multiple)
        ids = torch.full((len(enc), width), enc.pad_id, dtype=torch.int32)
        rows = torch.repeat_interleave(torch.arange(len(enc)), lengths)
        cols = torch.arange(len(enc.ids)) - torch.repeat_interleave(enc.offsets[:-1], lengths)
        ids[rows, cols] = enc.ids.to(torch.int32)
        return cls(ids.to(device), lengths, lengths.to(device), enc.labels.to(device))

    def __len__(self) -> int:
        return len(self.lengths)


def resident_batches(res: Resident, batch_size: int, seed: int | None,
                     multiple: int = 8) -> Iterator[dict]:
    """The same batches as ``text_batches`` (same order, same widths), built on the device."""
    order = (train_order(res.lengths, batch_size, seed) if seed is not None
             else eval_order(res.lengths, batch_size))
    if not order:
        return
    flat = torch.cat(order).to(res.ids.device, non_blocking=True)  # one copy per epoch
    start = 0
    positions = torch.arange(res.ids.shape[1], device=res.ids.device)
    for index in order:
        rows = flat[start:start + len(index)]
        start += len(index)
        width = min(res.ids.shape[1], _round_up(int(res.lengths[index].max()), multiple))
        mask = (positions[:width] < res.device_lengths[rows, None]).long()
        yield {"input_ids": res.ids[rows, :width], "attention_mask": mask,
               "labels": res.labels[rows], "lengths": res.lengths[index], "index": index}


def _round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


def train_order(lengths: torch.Tensor, batch_size: int, seed: int) -> list[torch.Tensor]:
    """Length-grouped, shuffled batches of indices; the same seed gives the same order."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(lengths), generator=gen)
    chunk = batch_size * CHUNK_BATCHES
    batches: list[torch.Tensor] = []
    for start in range(0, len(perm), chunk):
        part = perm[start:start + chunk]
        part = part[torch.argsort(lengths[part], stable=True)]
        batches += list(torch.split(part, batch_size))
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


def eval_order(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Length-sorted batches for inference (least padding); callers restore order by index."""
    return list(torch.split(torch.argsort(lengths, stable=True), batch_size))


def text_batches(enc: Encoded, batch_size: int, seed: int | None,
                 multiple: int = 8) -> Iterator[dict]:
    """Training batches when ``seed`` is given, else inference batches."""
    order = (train_order(enc.lengths, batch_size, seed) if seed is not None
             else eval_order(enc.lengths, batch_size))
    for index in order:
        yield collate(enc, index, multiple)


@dataclass
class Pixels:
    """Images of one split at the model's input size: uint8 N x 3 x H x W, and labels."""

    pixels: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> Pixels:
        return Pixels(self.pixels.to(device), self.labels.to(device))


def fits_on(device: torch.device, nbytes: int, share: float = 0.25) -> bool:
    """Whether a split of ``nbytes`` may live on ``device``: always on the CPU, on a GPU when
    it takes at most ``share`` of the free memory (the model and activations need the rest).
    Blocks PyTorch's caching allocator holds but no tensor uses count as free: the driver
    sees them as taken, yet the split's tensors would be placed in them first."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    return nbytes <= share * (free + cached)


def image_batches(data: Pixels, batch_size: int, seed: int | None) -> Iterator[dict]:
    """Shuffled training batches when ``seed`` is given, else in order. Pixels stay uint8
    until the model (a quarter of the host-to-device traffic); augmentation happens there.
    Pixels already on the device (``Pixels.to``) are gathered there, the order copied once."""
    if seed is None:
        order = torch.arange(len(data))
    else:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    on_device = order.to(data.pixels.device, non_blocking=True)
    for index, rows in zip(torch.split(order, batch_size), torch.split(on_device, batch_size),
                           strict=True):
        yield {"pixel_values": data.pixels[rows], "labels": data.labels[rows], "index": index}


def pad_multiple(device_type: str) -> int:
    """Pad widths to multiples of 8 for GPU tensor cores; on a CPU every pad token is waste
    (measured: ~10% of a MiniLM epoch on the default data)."""
    return 8 if device_type == "cuda" else 1


def feature_batches(features: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    seed: int | None) -> Iterator[dict]:
    """Batches of cached pooled features for the linear probe."""
    if seed is None:
        order = torch.arange(len(labels))
    else:
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    on_device = order.to(features.device, non_blocking=True)
    for index, rows in zip(torch.split(order, batch_size), torch.split(on_device, batch_size),
                           strict=True):
        yield {"features": features[rows], "labels": labels[rows], "index": index}
