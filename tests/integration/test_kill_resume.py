"""Crash and resume: ``ferry run`` killed with SIGKILL at a random point of its fine-tune
resumes from its last checkpoint when re-run, and ends exactly where an uninterrupted run
ends (same weights, same per-epoch history): optimizer, scheduler, RNG and batch position
all came back. A kill in the middle of writing a checkpoint leaves the previous one loadable.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ferry.transfer.checkpoint import LAST, Checkpointer
from tests.conftest import review_rows, tiny_overrides, write_csv

STEPS_PER_EPOCH = 800 // 8  # 800 train rows (80% of 1,000) / batch 8


def _command(overrides: list[str]) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("ferry")), "run"]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def _folder(root: Path, ckpts: str) -> Path | None:
    found = list((root / ckpts).glob("transfer-*"))
    return found[0] if found else None


def test_sigkill_mid_training_resumes_where_it_stopped(tmp_path, tiny_bert, cli_env):
    data = write_csv(tmp_path / "reviews.csv", review_rows(1000))
    base = [*tiny_overrides(tiny_bert, data), "train.epochs=4", "train.batch_size=8",
            "train.checkpoint_every=10", "train.patience=4", "baseline=none",
            "shift.enabled=false", "train.device=cpu"]
    env = {**cli_env, "PREFECT_HOME": str(tmp_path / "prefect")}
    whole = subprocess.run(_command([*base, "paths.checkpoints=ckpt-a"]), cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr[-3000:]

    kills = []
    rng = random.Random(os.getpid())
    for _ in range(2):  # two kills at random points of the same training
        proc = subprocess.Popen(_command([*base, "paths.checkpoints=ckpt-b"]), cwd=tmp_path,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        deadline = time.monotonic() + 300
        before = _progress(tmp_path)
        while _progress(tmp_path) <= before:  # a (new) checkpoint was written: training runs
            assert proc.poll() is None and time.monotonic() < deadline, "finished before a kill"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.4))  # (a fast CPU trains hundreds of steps a second)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        state = Checkpointer(_folder(tmp_path, "ckpt-b"), {}).folder / LAST
        saved = torch.load(state, weights_only=True)  # loadable after the kill
        kills.append(saved["epoch"] * STEPS_PER_EPOCH + int(saved["partial"].get("done", 0)))
    assert kills[1] > kills[0] > 0

    resumed = subprocess.run(_command([*base, "paths.checkpoints=ckpt-b"]), cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done_a = json.loads((_folder(tmp_path, "ckpt-a") / "complete.json").read_text())
    done_b = json.loads((_folder(tmp_path, "ckpt-b") / "complete.json").read_text())
    start = done_b["resumed_from"] * STEPS_PER_EPOCH + done_b["resumed_step"]
    assert start == kills[1], "the re-run did not start at the last checkpoint"
    for a, b in zip(done_a["history"], done_b["history"], strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert abs(a[key] - b[key]) < 1e-5, (key, a, b)
    w_a = load_file(str(_folder(tmp_path, "ckpt-a") / "model" / "model.safetensors"))
    w_b = load_file(str(_folder(tmp_path, "ckpt-b") / "model" / "model.safetensors"))
    assert max(float((w_a[k] - w_b[k]).abs().max()) for k in w_a) < 1e-5
    print(f"kills at global steps {kills}; resumed at {start} of "
          f"{4 * STEPS_PER_EPOCH}; at most 10 steps redone per kill")


def _progress(root: Path) -> float:
    folder = _folder(root, "ckpt-b")
    path = folder / LAST if folder else None
    return path.stat().st_mtime_ns if path and path.is_file() else 0


def test_kill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, torch
        from ferry.transfer import checkpoint
        ckpt = checkpoint.Checkpointer(__import__("pathlib").Path({str(tmp_path)!r}), {{"r": 1}})
        ckpt.save({{"epoch": 1, "weights": torch.ones(1000)}})
        real = torch.save
        def dying(obj, f):
            real(obj, f)
            with open(f, "r+b") as handle:
                handle.truncate(os.path.getsize(f) // 2)  # half written ...
            os.kill(os.getpid(), signal.SIGKILL)  # ... and killed
        checkpoint.torch.save = dying
        ckpt.save({{"epoch": 2, "weights": torch.zeros(1000)}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert list(tmp_path.glob(".*.tmp"))  # the torn write is there, under its temp name
    state = Checkpointer(tmp_path, {"r": 1}).load()
    assert state["epoch"] == 1 and float(state["weights"].sum()) == 1000
