"""Batched inference (logits or pooled features) in the original example order."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ferry.transfer.loop import to_device


@torch.no_grad()
def run(fn: Callable[[dict], torch.Tensor], batches: Iterable[dict], n: int,
        device: torch.device, desc: str | None = None) -> torch.Tensor:
    """Apply ``fn`` to every batch and scatter the rows back by ``batch['index']``."""
    from tqdm.auto import tqdm

    out: torch.Tensor | None = None
    for batch in tqdm(batches, desc=desc, leave=False, disable=None if desc else True):
        index = batch["index"]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            rows = fn(to_device(batch, device)).float().cpu()
        if out is None:
            out = torch.empty((n, *rows.shape[1:]), dtype=rows.dtype)
        out[index] = rows
    assert out is not None, "no batches"
    return out


def predict_folder(model_dir, texts: list[str], batch_size: int,
                   device: torch.device) -> torch.Tensor:
    """Class probabilities of an exported model folder for raw texts or image paths
    (self-training, CLI), calibrated by the temperature the folder records."""
    from ferry.models.tasks import Layout
    from ferry.transfer.modality import of_folder

    mod = of_folder(model_dir)
    model, processor, meta = mod.load(model_dir)
    model.to(device)
    data = mod.encode(processor, meta, texts, [0] * len(texts))
    logits = run(model, mod.batches(data, batch_size, None, device), len(data), device)
    return torch.from_numpy(Layout.from_meta(meta).probabilities(logits)[0])
