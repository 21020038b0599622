"""Where and how a training step runs: the device, TF32, whether to compile, the Runner.

These decisions are the ones a CUDA host changes, so they sit together, apart from the loop:
an unusable GPU is said out loud rather than silently trained around, ``train.compile: auto``
compiles only when the run is long enough to pay for it, and compiled code lands in the
project's own cache.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ferry.config import TrainConfig
from ferry.errors import ConfigError
from ferry.transfer import parallel

log = logging.getLogger("ferry.train")

# ``train.compile: auto`` compiles only runs of at least this many optimizer steps. Assumed
# (MiniLM-sized encoder, bf16, one GPU of the H100 class): compiling costs ~10 s per graph
# cold (forward + backward per padded width bucket, 128 / 32 = 4 buckets: ~40 s), and saves
# ~4 ms per step (a short-text step is launch-bound at ~10 ms eager; fusion removes about
# half the launches). 40 s / 4 ms = 10,000 steps to break even. The default job (3,890
# training texts, batch 32, two epochs) is 244 steps: seconds per epoch eager, so auto stays
# eager. A GPU run (make gpu-check) measures both and should replace these assumptions.
COMPILE_MIN_STEPS = 10_000
NVIDIA_PROC = Path("/proc/driver/nvidia/version")
CACHE_VARS = {"TORCHINDUCTOR_CACHE_DIR": "inductor", "TRITON_CACHE_DIR": "triton"}
# Set before Ferry ran: the user's choice, never overridden (inductor itself sets the
# first one once it runs, so presence later says nothing about who set it).
USER_CACHE_VARS = frozenset(k for k in CACHE_VARS if k in os.environ)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when usable, else the CPU (with denormals flushed: much faster).

    Inside a torchrun job each process takes the GPU of its local rank. On a GPU, fp32
    matmuls and convolutions may use TF32 and cuDNN picks its fastest kernels (image shapes
    are fixed). ``cuda`` without a usable CUDA is a ConfigError saying why; ``auto`` on a
    host whose NVIDIA GPU this torch cannot use warns once (it would train on the CPU,
    hundreds of times slower, without a word otherwise).
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cpu" and nvidia_driver():
            _warn_unused_gpu()
    elif name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is cuda but {why_no_cuda()}. {FIX}")
    if name == "cpu":
        torch.set_flush_denormal(True)
        return torch.device("cpu")
    tf32()
    torch.backends.cudnn.benchmark = True
    local = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local)) if local is not None else torch.device(name)


FIX = ("Install a torch wheel built for a CUDA version your driver supports (`nvidia-smi` "
       "shows it; e.g. pip install torch --index-url https://download.pytorch.org/whl/cu126) "
       "or upgrade the NVIDIA driver; or set train.device=cpu to train on the CPU")


def tf32() -> None:
    """TF32 for fp32 matmuls and convolutions, through the per-backend API (the one
    transformers' Trainer also uses, at the generic level), and the legacy precision kept in
    step: on torch 2.14 the new API alone leaves ``torch.get_float32_matmul_precision()``
    raising (a "mix of the legacy and new APIs"), and inductor's autotuning
    (``compile_mode: max-autotune``) calls it."""
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    torch.backends.cudnn.conv.fp32_precision = "tf32"
    torch.set_float32_matmul_precision("high")  # the same setting, seen by legacy readers


def nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version ("present" without one), or None when the host
    shows no NVIDIA GPU."""
    if NVIDIA_PROC.is_file():
        text = NVIDIA_PROC.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"Kernel Module\s+(\S+)", text)
        return found.group(1) if found else "present"
    return "present" if shutil.which("nvidia-smi") else None


def why_no_cuda() -> str:
    """What stands between this torch and a GPU, in words."""
    if torch.version.cuda is None:
        return f"this torch ({torch.__version__}) is a CPU-only build"
    driver = nvidia_driver()
    if driver is None:
        return "no NVIDIA driver was found (no /proc/driver/nvidia/version, no nvidia-smi)"
    return (f"torch {torch.__version__} (built for CUDA {torch.version.cuda}) cannot use the "
            f"GPU with NVIDIA driver {driver} (most often: the driver is older than that CUDA)")


@functools.cache
def _warn_unused_gpu() -> None:
    log.warning("An NVIDIA GPU is present but %s: training runs on the CPU. %s.",
                why_no_cuda(), FIX)


def compiling(cfg: TrainConfig, device: torch.device, steps: int | None = None,
              model: nn.Module | None = None, custom_loss: bool = False) -> bool:
    """``train.compile``: ``on`` compiles (a custom loss excepted: it calls the model's parts
    itself); ``auto`` compiles on a GPU a run of at least COMPILE_MIN_STEPS optimizer steps
    (``steps``: all epochs; unknown counts as few), never a head on cached features (the
    probe: one Linear, nothing to fuse)."""
    if cfg.compile == "off" or custom_loss:
        return False
    if cfg.compile == "on":
        return True
    from ferry.models.classifier import Head

    return (device.type == "cuda" and steps is not None and steps >= COMPILE_MIN_STEPS
            and not isinstance(model, Head))


def compile_multiple(cfg: TrainConfig, device: torch.device, model: nn.Module, rows: int,
                     custom_loss: bool, cache: Path) -> int | None:
    """The width text batches are padded to for a compiled run of ``rows`` training rows
    (the decision ``fit`` takes: ``compiling`` on all its steps), None when it runs eager
    (padding would only add pad tokens). A compiled run gets the project's kernel cache."""
    steps = cfg.epochs * cfg.passes_per_epoch * -(-rows // cfg.batch_size)
    if not compiling(cfg, device, steps, model, custom_loss):
        return None
    compile_cache(cache / "compile")
    return cfg.compile_width_multiple


def compile_cache(folder: Path) -> None:
    """Keep inductor's and Triton's compiled kernels under ``folder`` (the project's
    ``.ferry`` cache: found again by the next run, removed with the project) unless the
    user chose their own folders."""
    for var, sub in CACHE_VARS.items():
        if var not in USER_CACHE_VARS:
            os.environ[var] = str((folder / sub).resolve())


def compile_shapes(cfg: TrainConfig, model: nn.Module, packs: bool) -> int:
    """How many input shapes a compiled graph may see: padded widths bucketed by
    ``compile_width_multiple``, or packed token counts (about 8 buckets per doubling)."""
    widths = -(-max_width(model) // cfg.compile_width_multiple)
    if not packs:
        return widths
    return 8 * (cfg.batch_size * max_width(model)).bit_length()


def max_width(model: nn.Module) -> int:
    """The widest text batch the model takes (for the compiled-shape budget); 1 for images."""
    config = getattr(getattr(model, "encoder", None), "config", None)
    return int(getattr(config, "max_position_embeddings", 1) or 1)


@dataclass
class Runner:
    """What runs a training step: the model, wrapped in DDP (several processes) and
    compiled (``train.compile``), rebuilt when a strategy unfreezes more of it."""

    net: nn.Module
    world: parallel.World
    device: torch.device
    compile: bool
    shapes: int
    custom_loss: bool
    mode: str = "default"
    packing: bool = False  # train.packing: batches flattened to their real tokens
    module: nn.Module = field(init=False)
    builds: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.rebuild()

    @classmethod
    def build(cls, model: nn.Module, cfg: TrainConfig, device: torch.device, steps: int,
              custom_loss: bool) -> Runner:
        """The runner ``fit`` trains with for ``steps`` optimizer steps in all: compiled
        when ``compiling`` says so, packed when ``packing.enabled`` does."""
        from ferry.transfer import packing

        packs = packing.enabled(cfg, model, device, custom_loss=custom_loss)
        return cls(model, parallel.current(), device,
                   compiling(cfg, device, steps, model, custom_loss),
                   shapes=compile_shapes(cfg, model, packs), custom_loss=custom_loss,
                   mode=cfg.compile_mode, packing=packs)

    def rebuild(self) -> None:
        """Wrap (and compile) the model as it is now. Each build's graphs join the earlier
        ones in dynamo's cache of the same module, so the recompile budget grows with the
        builds (gradual unfreezing would otherwise fall back to eager after a few)."""
        self.builds += 1
        if self.custom_loss:  # a custom loss calls the model's parts itself: run it plain
            self.module = self.net
            return
        module = parallel.wrap(self.net, self.world, self.device)
        self.module = parallel.compiled(module, self.shapes * self.builds, self.mode) \
            if self.compile else module

    def receipt(self, cfg: TrainConfig) -> dict:
        """How it ran (``FitResult.runtime``): what a GPU check reads back."""
        return {"device": str(self.device), "world_size": self.world.size,
                "autocast": "bf16" if self.device.type == "cuda" else "off",
                "compiled": self.compile and not self.custom_loss, "packed": self.packing,
                "max_grad_norm": cfg.max_grad_norm or 0.0}
