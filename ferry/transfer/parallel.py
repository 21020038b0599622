"""Data parallelism and static shapes inside the one loop.

Every process of a torchrun job walks the same global batches (same seeds, same order) and
takes a contiguous share of each, so ``train.batch_size`` keeps meaning the global batch and
N processes learn what one process would with the same batch. The loss of a share is scaled
by its size so DDP's gradient average equals the global batch's mean exactly, uneven shares
included. Compiled training pads a short batch to the full size with ignored rows (label
-100), so the compiled graph sees a bounded set of shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

IGNORE = -100  # cross-entropy's ignore_index: padding rows add no loss and no gradient


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` data-parallel processes (1 outside torchrun)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints and the exported model."""
        return self.rank == 0


def current() -> World:
    """The initialised process group's world, or a world of one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def rows(batch: dict) -> int:
    return len(batch["labels"])


def shard(batch: dict, world: World) -> dict:
    """This rank's contiguous share of a global batch (sizes differ by at most one)."""
    if world.size == 1:
        return batch
    n = rows(batch)
    start, end = n * world.rank // world.size, n * (world.rank + 1) // world.size
    return {k: _rows(v, n, slice(start, end)) for k, v in batch.items() if k != "index"}


def pad_rows(batch: dict, size: int) -> dict:
    """Fill a short batch up to ``size`` rows with copies of its rows labelled IGNORE."""
    n = rows(batch)
    if n >= size:
        return batch
    out = {}
    for key, value in batch.items():
        if key == "index" or not torch.is_tensor(value) or len(value) != n:
            continue
        if key == "labels":
            out[key] = torch.cat([value, value.new_full((size - n, *value.shape[1:]), IGNORE)])
        else:
            out[key] = value[torch.arange(size, device=value.device) % n]
    return out


def _rows(value, n: int, part: slice):
    return value[part] if torch.is_tensor(value) and len(value) == n else value


def wrap(net: nn.Module, world: World, device: torch.device) -> nn.Module:
    """DDP around ``net`` in a multi-process world (its current trainable parameters)."""
    if world.size == 1:
        return net
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                   else None)


def compiled(net: nn.Module, shapes: int, mode: str = "default") -> nn.Module:
    """``torch.compile`` with static shapes; room for ``shapes`` graphs before dynamo gives
    up (widths are bucketed, so the count is bounded by max_length / width multiple), in
    the per-module and the process-wide budgets (falling back to eager is silent)."""
    import torch._dynamo.config as dynamo

    dynamo.recompile_limit = max(dynamo.recompile_limit, shapes + 4)
    dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, shapes + 4)
    return torch.compile(net, dynamic=False, mode=None if mode == "default" else mode)


def all_mean(value: torch.Tensor, world: World) -> torch.Tensor:
    """Mean of a scalar over all processes (once per epoch: the logged train loss)."""
    if world.size == 1:
        return value
    import torch.distributed as dist

    value = value.clone()
    dist.all_reduce(value)
    return value / world.size


def from_main(flag: bool, world: World, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank: a decision each rank could take differently (float
    ties in validation scores) but all must share, or some wait forever in a collective."""
    if world.size == 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor(float(flag), device=device)
    dist.broadcast(value, src=0)
    return bool(value.item())


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()
