"""The one training loop, for every strategy and modality.

It sees a model that maps a batch dict to logits, a batch iterator per epoch and a validation
function; strategies decide the param groups beforehand. GPU: bf16 autocast; fused AdamW everywhere.
Losses are summed on the device and read once per epoch (no host sync per step). After each
epoch: validate, keep the best weights, checkpoint; stop early when validation stops improving.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ferry.config import TrainConfig
from ferry.transfer import budget, packing, parallel
from ferry.transfer.checkpoint import Checkpointer, restore_rng, rng_state
from ferry.transfer.objective import partial_loss
from ferry.transfer.runtime import Runner, resolve_device
from ferry.transfer.runtime import compiling as compiling  # (re-export: benchmarks import it)


@dataclass
class FitResult:
    """What training did: per-epoch history and the chosen (best) epoch."""

    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)
    resumed_from: int = 0  # complete epochs found in the checkpoint
    resumed_step: int = 0  # steps of the next epoch found there (mid-epoch checkpoint)
    seconds: float = 0.0
    stopped_early: bool = False
    out_of_time: bool = False  # stopped by train.time_budget_s
    # How it ran (device, autocast dtype, compiled, packed, data on the device, clipping):
    # receipts that a GPU run engaged the fast paths (benchmarks/gpu_check.py reads them).
    runtime: dict = field(default_factory=dict)


log = logging.getLogger("ferry.train")
LossFn = Callable[[nn.Module, dict], tuple[torch.Tensor, torch.Tensor | None]]
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class Hooks(Protocol):
    """A strategy bound to its model: unfreezing per epoch, and its checkpointed state."""

    def start_epoch(self, epoch: int) -> list[dict]: ...
    def restore(self, state: dict) -> list[dict]: ...
    def state(self) -> dict: ...


def make_optimizer(groups: list[dict], device: torch.device) -> torch.optim.Optimizer:
    """Fused AdamW: one kernel for all parameters (on the CPU too, where the per-parameter
    loop took ~25% of a MiniLM step on 2 cores, 0.12 s vs 0.024 s)."""
    return torch.optim.AdamW(groups, fused=device.type in ("cuda", "cpu"))


def warmup_linear(opt: torch.optim.Optimizer, total: int, warmup_ratio: float):
    """Linear warm-up then linear decay to zero over ``total`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(opt, _schedule(total, warmup_ratio))


def _schedule(total: int, warmup_ratio: float) -> Callable[[int], float]:
    warm = max(1, math.ceil(total * warmup_ratio))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total - step) / max(1, total - warm))

    return factor


def add_groups(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LambdaLR,
               groups: list[dict]) -> None:
    """Add param groups mid-training, on the schedule's current factor (LambdaLR does not)."""
    for group in groups:
        base = group["lr"]
        opt.add_param_group({**group, "initial_lr": base})
        sched.base_lrs.append(base)
        sched.lr_lambdas.append(sched.lr_lambdas[0])
        opt.param_groups[-1]["lr"] = base * sched.lr_lambdas[0](max(sched.last_epoch, 0))


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors already on ``device`` (resident data) are returned as they are; host-side
    ``lengths`` (what packing reads) stay behind."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if k != "lengths"}


def fit(model: nn.Module, groups: list[dict], batches: Callable[[int], Iterable[dict]],
        steps_per_epoch: int, validate: Callable[[nn.Module], dict[str, float]],
        cfg: TrainConfig, ckpt: Checkpointer | None, extra_state: dict | None = None,
        on_epoch: Callable[[int, dict], None] | None = None,
        monitor: str = "val_accuracy", hooks: Hooks | None = None,
        loss_fn: LossFn | None = None, objective: Criterion | None = None) -> FitResult:
    """Train ``model`` for ``cfg.epochs`` epochs (resuming from ``ckpt``); leave it at its best.

    ``loss_fn(model, batch) -> (loss, aux)`` replaces plain cross-entropy (domain adaptation
    adds an alignment term and reports it as ``aux``); ``objective(logits, targets)`` only the
    criterion (tasks, class weights: compile and DDP stay). Checkpoints are written after every
    epoch and, with ``train.checkpoint_every``, every that many steps inside one.
    """
    device = resolve_device(cfg.device)
    model.to(device)
    opt = make_optimizer(groups, device)
    sched = warmup_linear(opt, cfg.epochs * steps_per_epoch, cfg.warmup_ratio)
    result = FitResult(best_epoch=0, best_metric=-math.inf)
    start, partial = _resume(ckpt, model, opt, sched, result, hooks)
    runner = Runner.build(model, cfg, device, cfg.epochs * steps_per_epoch, loss_fn is not None)
    world = runner.world
    writer = ckpt if world.main else None  # the other ranks read checkpoints, never write
    result.runtime = runner.receipt(cfg)

    def snapshot(epoch: int, part: dict | None = None) -> dict:
        return _state(epoch, model, opt, sched, result, hooks, extra_state, part)

    for record in result.history:  # a resumed run shows the epochs it did not redo
        if on_epoch:
            on_epoch(int(record["epoch"]), record)
    began = time.perf_counter()
    for epoch in range(start + 1, cfg.epochs + 1):
        if _patience_spent(cfg, result, epoch, monitor, world, device):
            break
        if _out_of_time(cfg, result, time.perf_counter() - began, start, world, device):
            break
        if hooks and not partial and (added := hooks.start_epoch(epoch)):
            add_groups(opt, sched, added)  # (a mid-epoch resume restored them already)
            runner.rebuild()  # DDP and the compiled graph must see the new trainable set
        on_step = (lambda part, e=epoch: writer.save(snapshot(e - 1, part))) if writer else None
        record = _epoch(runner, batches(epoch), steps_per_epoch, opt, sched, epoch, cfg,
                        loss_fn or partial_loss(objective), partial, on_step)
        partial = None
        record.update(validate(model))
        result.history.append(record)
        if record[monitor] > result.best_metric:
            result.best_metric, result.best_epoch = record[monitor], epoch
            if writer:
                writer.save_best(model)
        if writer:
            writer.save(snapshot(epoch))
        if on_epoch:
            on_epoch(epoch, record)
    parallel.barrier(world)
    if writer:
        writer.load_best(model)
    result.seconds = time.perf_counter() - began
    return result


def _patience_spent(cfg: TrainConfig, result: FitResult, epoch: int, monitor: str,
                    world: parallel.World, device: torch.device) -> bool:
    """Early stopping: ``train.patience`` epochs without a better validation score (said once,
    so that a run that ends before its planned epochs explains why). Rank 0 decides for all:
    each rank scores validation itself, and a rank that stopped alone would leave the
    others waiting in the next all-reduce."""
    spent = bool(result.best_epoch) and epoch - result.best_epoch > cfg.patience
    if not parallel.from_main(spent, world, device):
        return False
    result.stopped_early = True
    if world.main:
        log.info("stopped early: %d epochs without a better %s; keeping epoch %d (%.4f)",
                 cfg.patience, monitor, result.best_epoch, result.best_metric)
    return True


def _out_of_time(cfg: TrainConfig, result: FitResult, spent: float, resumed: int,
                 world: parallel.World, device: torch.device) -> bool:
    """``train.time_budget_s``: whether the next epoch, as long as the mean one so far
    (epochs of a resumed run included), would end past the budget. Every process takes the
    same decision (one stopping alone would leave the others waiting in a collective)."""
    if cfg.time_budget_s is None:
        return False
    spent += sum(float(r.get("epoch_seconds", 0.0)) for r in result.history[:resumed])
    late = budget.out_of_time(cfg.time_budget_s, spent, len(result.history))
    if world.size > 1:
        late = float(parallel.all_mean(torch.tensor(float(late), device=device), world)) > 0
    if late:
        result.stopped_early = result.out_of_time = True
        log.info("stopping after %d epochs: another would end past train.time_budget_s=%.0f s "
                 "(%.0f s spent)", len(result.history), cfg.time_budget_s, spent)
    return late


def _state(epoch: int, model: nn.Module, opt: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LambdaLR, result: FitResult, hooks: Hooks | None,
           extra: dict | None, partial: dict | None) -> dict:
    """Everything a resume needs: ``epoch`` complete epochs, plus ``partial`` progress into
    the next one (steps done, loss so far) for a mid-epoch checkpoint."""
    return {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), **rng_state(),
            "best_epoch": result.best_epoch, "best_metric": result.best_metric,
            "history": [{k: float(v) for k, v in h.items()} for h in result.history],
            "partial": partial or {}, **(extra or {}),
            **({"strategy": hooks.state()} if hooks else {})}


def _resume(ckpt: Checkpointer | None, model: nn.Module, opt: torch.optim.Optimizer,
            sched: torch.optim.lr_scheduler.LambdaLR, result: FitResult,
            hooks: Hooks | None) -> tuple[int, dict | None]:
    """(complete epochs, progress into the next one or None) of the last checkpoint."""
    state = ckpt.load() if ckpt else None
    if state is None:
        return 0, None
    if hooks:  # unfreeze exactly what was unfrozen, so the param groups line up again
        add_groups(opt, sched, hooks.restore(state.get("strategy", {})))
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    restore_rng(state)
    result.best_epoch, result.best_metric = int(state["best_epoch"]), float(state["best_metric"])
    result.history = list(state["history"])
    result.resumed_from = int(state["epoch"])
    partial = state.get("partial") or None
    result.resumed_step = int(partial["done"]) if partial else 0
    return result.resumed_from, partial


def _local(batch: dict, runner: Runner, local_size: int) -> tuple[dict, float]:
    """This process's share of a global batch (padded to a fixed size when compiled) and
    the weight of its loss, so the average over processes is the global batch's mean."""
    world = runner.world
    local = parallel.shard({k: v for k, v in batch.items() if k != "index"}, world)
    share = parallel.rows(local) * world.size / parallel.rows(batch)
    if runner.compile:
        local = parallel.pad_rows(local, local_size)
    if runner.packing:
        local = packing.flatten(local, 8 if runner.device.type == "cuda" else 1)
    return local, share


def _epoch(runner: Runner, batches: Iterable[dict], steps: int, opt: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LRScheduler, epoch: int, cfg: TrainConfig,
           loss_fn: LossFn, partial: dict | None = None,
           on_step: Callable[[dict], None] | None = None) -> dict[str, float]:
    """One pass over the batches. Losses stay on the device until the epoch ends (or a
    progress update, or a mid-epoch checkpoint), so steps queue up on a GPU without waiting
    for each other. ``partial``: progress restored from a mid-epoch checkpoint; the batches
    it covered are skipped (the epoch's order is seeded, so they are the same batches)."""
    runner.net.train()
    world, device = runner.world, runner.device
    local_size = -(-cfg.batch_size // world.size)
    partial = partial or {}
    loss_sum = torch.tensor(float(partial.get("loss_sum", 0.0)), device=device)
    aux_sum: torch.Tensor | None = None
    seen, mine, done = (int(partial.get(k, 0)) for k in ("seen", "mine", "done"))
    began = time.perf_counter() - float(partial.get("seconds", 0.0))
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=None if world.main else True)
    skip = done
    params = [p for group in opt.param_groups for p in group["params"]]
    for batch in bar:
        if skip:
            skip -= 1
            continue
        total = parallel.rows(batch)
        if total < world.size:  # a tail smaller than the world: every rank skips it
            continue
        local, share = _local(batch, runner, local_size)
        mine += round(share * total / world.size)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, aux = loss_fn(runner.module, to_device(local, device))
        (loss * share if share != 1 else loss).backward()
        if cfg.max_grad_norm:  # (no host sync: the clip factor stays on the device)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm, foreach=True)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        loss_sum += loss.detach()
        if aux is not None:
            aux_sum = aux.detach() if aux_sum is None else aux_sum + aux.detach()
        seen, done = seen + total, done + 1
        if done % cfg.log_every == 0:
            bar.set_postfix(loss=f"{float(loss_sum) / done:.4f}")
        if on_step and cfg.checkpoint_every and done % cfg.checkpoint_every == 0:
            on_step({"done": done, "seen": seen, "mine": mine, "loss_sum": float(loss_sum),
                     "seconds": time.perf_counter() - began})
    train_loss = float(parallel.all_mean(loss_sum, world)) / max(1, done)  # waits for the GPU
    elapsed = time.perf_counter() - began
    record = {"epoch": float(epoch), "train_loss": train_loss,
              "epoch_seconds": elapsed, "samples_per_s": seen / max(elapsed, 1e-9),
              "rows_per_process": float(mine)}
    if aux_sum is not None:
        record["train_aux_loss"] = float(aux_sum) / max(1, done)
    return record
