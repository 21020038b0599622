"""Repeats, statistics and the printed table of ``benchmarks/throughput.py``.

Each case's rows run ``--repeats`` times, the row order reversed on every other repeat (the
Trainer first, then Ferry first), with memory and compile caches freed between runs, so
neither side inherits the other's warm state or leftovers. The table prints medians with the
min-max range; the ratios are Ferry (and Ferry packed) over the best Trainer row.
"""

from __future__ import annotations

import gc
import re
import statistics
from collections.abc import Callable

import torch
from throughput_loops import (
    FERRY_ROWS,
    TRAINER_ROWS,
    Case,
    Measure,
    reset_peak,
    run_ferry,
    run_trainer,
)

ROWS = TRAINER_ROWS + FERRY_ROWS
# Dense (not sparse) bf16 tensor-core peaks from the vendor's data sheets, TFLOP/s; the first
# pattern found in torch.cuda.get_device_name wins (PCIe before SXM, L40S before L4).
SPEC_BF16 = ((r"H100.*PCIe", 756.0), (r"H100.*NVL", None), (r"H100", 989.0), (r"H200", 989.0),
             (r"A100", 312.0), (r"L40S", 362.0), (r"\bL4\b", 121.0), (r"\bA10\b", 125.0))
HEADER = (f"{'case':<16}{'loop':<24}{'samples/s':>10}{'min-max':>16}{'tokens/s':>10}"
          f"{'MFU%':>6}{'spec%':>6}{'peakGiB':>8}{'warmup s':>9}{'finish s':>9}"
          f"{'min-max':>14}")


def spec_peak(name: str) -> float | None:
    """The device's dense bf16 peak in FLOP/s, None when the device is not in the table."""
    for pattern, tflops in SPEC_BF16:
        if re.search(pattern, name):
            return tflops * 1e12 if tflops else None
    return None


def skipped(row: str, case: Case, args, device: torch.device) -> str | None:
    """Why ``row`` does not run for ``case`` (None: it runs)."""
    if row not in args.rows:
        return "not in --rows"
    if case.kind == "image" and row.endswith("packed"):
        return "images: no padding to remove"
    if row == "trainer-tuned-compiled" and device.type == "cpu" and (
            case.kind == "image" or case.length == "real"):
        # (measured here: inductor recompiling tiny-real per batch width took 160 s)
        return "CPU: compiled on fixed-width texts only (compile time; GPU runs have it)"
    return None


def free(device: torch.device) -> None:
    """Drop what the last run left: Python garbage, dynamo's compiled frames (which hold the
    old model and count toward its recompile limit), the CUDA cache."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def run_case(case: Case, build: Callable, data, args, device: torch.device
             ) -> dict[str, list[Measure]]:
    """Every row that runs for ``case``, ``args.repeats`` times, in alternating order."""
    rows = [r for r in ROWS if skipped(r, case, args, device) is None]
    out: dict[str, list[Measure]] = {r: [] for r in rows}
    for rep in range(args.repeats):
        for row in rows if rep % 2 == 0 else rows[::-1]:
            free(device)
            reset_peak(device)
            model = build(case.model)
            if row in FERRY_ROWS:
                m = run_ferry(model, case, data, args, device, packed=row == "ferry-packed")
            else:
                m = run_trainer(model, case, data, args, device, row)
            del model
            out[row].append(m)
    free(device)
    return out


def _span(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def report(case: Case, runs: dict[str, list[Measure]], samples: int, tokens: int,
           flops: float, peaks: tuple[float, float | None], args, device) -> None:
    """The case's rows (medians, ranges), its skipped rows and its two ratios."""
    measured, spec = peaks
    rates: dict[str, float] = {}
    for row in ROWS:
        if row not in runs:
            print(f"{case.name:<16}{row:<24}skipped: {skipped(row, case, args, device)}")
            continue
        ms = runs[row]
        per_s = [samples / m.seconds for m in ms]
        rate = rates[row] = statistics.median(per_s)
        secs = samples / rate
        tok = f"{tokens / secs:>10.0f}" if tokens else f"{'-':>10}"
        spec_mfu = f"{100 * flops / secs / spec:>6.1f}" if spec else f"{'-':>6}"
        gib = [m.peak_gib for m in ms if m.peak_gib is not None]
        mem = f"{max(gib):>8.2f}" if gib else f"{'-':>8}"
        finish = [m.finish for m in ms]
        print(f"{case.name:<16}{row:<24}{rate:>10.1f}{_span(per_s, '{:.1f}'):>16}{tok}"
              f"{100 * flops / secs / measured:>6.1f}{spec_mfu}{mem}"
              f"{statistics.median(m.warmup for m in ms):>9.2f}"
              f"{statistics.median(finish):>9.2f}{_span(finish, '{:.2f}'):>14}")
    trainers = {r: v for r, v in rates.items() if r in TRAINER_ROWS}
    if not trainers:
        return
    best = max(trainers, key=trainers.get)
    for name, row in (("ratio", "ferry"), ("ratio-packed", "ferry-packed")):
        if row in rates:
            print(f"{case.name:<16}{name:<24}{row}/{best} {rates[row] / trainers[best]:.2f}x"
                  "  samples/s, medians")


def packed_agreement(model: torch.nn.Module, enc, batch_size: int) -> dict[str, float]:
    """One batch through the classifier padded and packed (``ferry.transfer.packing``) in
    fp32 with dropout off: the largest logit, loss and gradient differences. Packing must
    change only the speed, so these are float rounding (~1e-6), not a modelling error."""
    from ferry.transfer import packing
    from ferry.transfer.batching import collate

    model.eval()  # dropout off: both passes must compute the same function
    batch = collate(enc, torch.arange(min(batch_size, len(enc))), multiple=1)
    outs = []
    for form in (batch, packing.flatten(batch)):
        model.zero_grad(set_to_none=True)
        logits = model({k: v for k, v in form.items() if k != "lengths"})
        loss = torch.nn.functional.cross_entropy(logits, form["labels"])
        loss.backward()
        grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()
                           if p.grad is not None])
        outs.append((logits.detach(), loss.detach(), grads))
    (l0, s0, g0), (l1, s1, g1) = outs
    return {"logits": float((l0 - l1).abs().max()), "loss": float((s0 - s1).abs()),
            "grad": float((g0 - g1).abs().max()), "tokens": int(batch["lengths"].sum()),
            "padded": int(batch["input_ids"].numel())}
