"""Fine-tuning under torchrun: several processes (GPUs, machines) train one model with DDP.

The flow's fine-tune task launches ``torchrun`` and waits; it stays the only process that
talks to MLflow. Rank 0 appends each epoch's record to a file the task forwards to the run as
it appears, and alone writes checkpoints and the exported model; the other ranks only train.
Every rank reads the same spec (config, pretrained source, split folder), so on several
machines the checkpoint folder must be on a filesystem they share; the other machines join
with ``ferry join SPEC --node-rank K`` (README, Scaling out).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from ferry.config import DistributedConfig, FerryConfig
from ferry.errors import ConfigError, DistributedError
from ferry.files import write_atomic
from ferry.models.sources import PretrainedSource
from ferry.transfer.records import DONE

SPEC = "ddp-spec.json"
EPOCHS = "ddp-epochs.jsonl"


def wanted(cfg: FerryConfig, policy) -> bool:
    """Several processes for policies that train through the backbone; probes and zero-shot
    train a head on cached features in seconds and stay in one process."""
    return cfg.distributed.world > 1 and policy.trains and not policy.cached_features


def launch(cfg: FerryConfig, source: PretrainedSource, split_dir: Path, split_key: str,
           features_file: Path | None, role: str, folder: Path,
           on_epoch: Callable[[int, dict], None] | None) -> None:
    """Run the fine-tune under torchrun and forward rank 0's epoch records to ``on_epoch``."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = write_spec(cfg, source, split_dir, split_key, features_file, role, folder)
    epochs = folder / EPOCHS
    epochs.write_text("", encoding="utf-8")
    proc = subprocess.Popen(command(cfg.distributed, spec, cfg.distributed.node_rank),
                            env=worker_env())
    forwarded = 0
    while proc.poll() is None:
        forwarded = _forward(epochs, forwarded, on_epoch)
        time.sleep(1.0)
    _forward(epochs, forwarded, on_epoch)
    if proc.returncode != 0:
        raise DistributedError(f"torchrun ({cfg.distributed.world} processes) exited with "
                               f"{proc.returncode}; the workers' output above says why "
                               f"(spec: {spec})")


def write_spec(cfg: FerryConfig, source: PretrainedSource, split_dir: Path, split_key: str,
               features_file: Path | None, role: str, folder: Path) -> Path:
    """What every rank needs to build the same training; workers resume, never wipe."""
    run_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"resume": True})})
    spec = {"config": run_cfg.to_yaml(), "source": source.model_dump(mode="json"),
            "split_dir": str(Path(split_dir).resolve()), "split_key": split_key,
            "features_file": str(features_file) if features_file else None, "role": role,
            "epochs": str((folder / EPOCHS).resolve()), "cwd": str(Path.cwd())}
    path = folder / SPEC
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(spec, indent=2), encoding="utf-8"))
    return path.resolve()


def command(dist: DistributedConfig, spec: Path, node_rank: int) -> list[str]:
    """The torchrun command line for this machine: standalone rendezvous on one machine
    (a free port, no clash between runs), c10d at ``rdzv_endpoint`` across several."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(dist.nproc)]
    if dist.nnodes == 1:
        cmd += ["--standalone"]
    else:
        if node_rank >= dist.nnodes:
            raise ConfigError(f"distributed.node_rank {node_rank} must be below "
                              f"distributed.nnodes {dist.nnodes}")
        cmd += ["--nnodes", str(dist.nnodes), "--node-rank", str(node_rank),
                "--rdzv-backend", "c10d", "--rdzv-endpoint", dist.rdzv_endpoint,
                "--rdzv-id", Path(spec).parent.name]
    return [*cmd, "-m", "ferry.transfer.ddp_worker", str(spec)]


def worker_env() -> dict[str, str]:
    """The workers import Ferry from this checkout and use no more threads than their share."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def join(spec: Path, node_rank: int, wait_s: float = 600.0) -> int:
    """Another machine's part of a multi-node job: the same spec, its own node rank.

    ``spec`` is the launching machine's ``ddp-spec.json`` or the shared checkpoints folder;
    for a folder, the newest spec of a fine-tune that has not finished is joined (waiting
    up to ``wait_s`` for one to appear), so a joining machine can start before machine 0.
    """
    spec = pending_spec(Path(spec), wait_s) if Path(spec).is_dir() else Path(spec)
    loaded = json.loads(spec.read_text(encoding="utf-8"))
    cfg = FerryConfig.model_validate(yaml.safe_load(loaded["config"]))
    return subprocess.call(command(cfg.distributed, Path(spec).resolve(), node_rank),
                           env=worker_env(), cwd=loaded["cwd"])


def pending_spec(folder: Path, wait_s: float) -> Path:
    """The newest spec under ``folder`` whose training has no completion marker yet."""
    deadline = time.monotonic() + wait_s
    while True:
        specs = [p for p in folder.glob(f"*/{SPEC}") if not (p.parent / DONE).exists()]
        if specs:
            return max(specs, key=lambda p: p.stat().st_mtime)
        if time.monotonic() > deadline:
            raise DistributedError(f"no unfinished {SPEC} appeared under {folder} within "
                                   f"{wait_s:.0f} s; start `ferry run` on machine 0 first")
        time.sleep(2.0)


def _forward(epochs: Path, done: int, on_epoch: Callable[[int, dict], None] | None) -> int:
    """Pass the complete lines after the first ``done`` to ``on_epoch``; the new count."""
    lines = epochs.read_text(encoding="utf-8").splitlines(keepends=True) if epochs.is_file() \
        else []
    complete = [line for line in lines if line.endswith("\n")]
    for line in complete[done:]:
        record = json.loads(line)
        if on_epoch:
            on_epoch(int(record["epoch"]), record)
    return len(complete)


def _appender(path: Path) -> Callable[[int, dict], None]:
    """Rank 0's epoch callback: one JSON line per epoch, flushed at once."""
    def append(epoch: int, record: dict) -> None:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({k: float(v) for k, v in record.items()}) + "\n")
    return append
