"""The CUDA-only decisions, taken on a CPU: what a GPU host would do, with torch.cuda mocked.

Compile only when a run is long enough to pay for it; one sweep run at a time on a GPU;
fp32 weights from a bf16 checkpoint; a checkpoint from a host with more GPUs resumes; DDP
ranks share rank 0's early-stopping decision (two gloo processes); TF32 set so that every
reader agrees; an unusable GPU said out loud; PyTorch's cached blocks count as free;
resident token ids in int32.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ferry import experiments
from ferry.config import FerryConfig, TrainConfig
from ferry.errors import ConfigError
from ferry.models.classifier import Head, load_encoder
from ferry.models.sources import PretrainedSource
from ferry.transfer import batching, loop, runtime

ROOT = Path(__file__).resolve().parents[2]

CUDA = torch.device("cuda")
CPU = torch.device("cpu")


@pytest.mark.parametrize(("compile_", "device", "steps", "probe", "expected"), [
    ("auto", CUDA, 530, False, False),  # the default job: seconds per epoch eager
    ("auto", CUDA, runtime.COMPILE_MIN_STEPS, False, True),
    ("auto", CUDA, None, False, False),  # unknown length counts as short
    ("auto", CUDA, 10**6, True, False),  # a Linear on cached features: nothing to fuse
    ("auto", CPU, 10**6, False, False),
    ("on", CPU, 10, True, True),  # on forces, whatever the device, length or model
    ("off", CUDA, 10**6, False, False),
])
def test_compile_is_chosen_by_expected_steps(compile_, device, steps, probe, expected):
    model = Head(8, 2, 0.0) if probe else torch.nn.Linear(8, 2)
    assert runtime.compiling(TrainConfig(compile=compile_), device, steps, model) is expected


def test_custom_loss_runs_eager_and_unpadded(tmp_path):
    cfg = TrainConfig(compile="on", epochs=2, batch_size=8)
    assert not runtime.compiling(cfg, CUDA, 10**6, None, custom_loss=True)
    assert runtime.compile_multiple(cfg, CUDA, torch.nn.Linear(2, 2), 100, True,
                                    tmp_path) is None


def test_compiled_run_pads_and_caches_kernels_under_the_project(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "USER_CACHE_VARS", frozenset({"TRITON_CACHE_DIR"}))
    monkeypatch.setenv("TRITON_CACHE_DIR", "/users/own/triton")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    cfg = TrainConfig(epochs=2, batch_size=32)
    net = torch.nn.Linear(2, 2)
    assert runtime.compile_multiple(cfg, CUDA, net, 8_500, False, tmp_path) is None  # 532
    import os

    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    assert runtime.compile_multiple(cfg, CUDA, net, 200_000, False, tmp_path) == 32
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile" / "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == "/users/own/triton"  # the user's choice stays


def test_sweep_auto_is_sequential_on_a_gpu(tmp_path, monkeypatch):
    source = PretrainedSource(kind="local", name="m", path=str(tmp_path), sha256="0",
                              weights=[])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (140 << 30, 140 << 30))
    assert experiments.workers(FerryConfig(), source) == 1
    assert experiments.workers(FerryConfig(sweep={"concurrency": 3}), source) == 3


def test_sweep_size_estimate_reads_an_image_weights_file(tmp_path, monkeypatch):
    import psutil

    weights = tmp_path / "lite0.pth"
    with weights.open("wb") as handle:
        handle.truncate(2 << 30)  # sparse: 2 GiB of weights on no disk
    source = PretrainedSource(kind="packaged", name="efficientnet-lite0", path=str(weights),
                              sha256="0", weights=[weights.name], modality="image")
    assert experiments.weight_bytes(source) == 2 << 30
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(experiments.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("M", (), {"available": 20 << 30}))
    assert experiments.workers(FerryConfig(), source) == 2  # 20 GiB // (4 x 2 GiB + 1 GiB)


def test_a_bf16_checkpoint_loads_as_fp32_weights(tmp_path):
    from transformers import AutoModel, BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=32)
    BertModel(config).to(torch.bfloat16).save_pretrained(str(tmp_path), safe_serialization=True)
    plain = AutoModel.from_pretrained(str(tmp_path), local_files_only=True)
    assert next(plain.parameters()).dtype == torch.bfloat16  # what transformers 5 does
    for pretrained in (True, False):
        encoder = load_encoder(tmp_path, pretrained=pretrained)
        assert {p.dtype for p in encoder.parameters()} == {torch.float32}


class _Saved:
    """A checkpointer that hands back one state."""

    def __init__(self, state: dict) -> None:
        self.state = state

    def load(self) -> dict:
        return self.state


def test_a_checkpoint_with_two_gpu_states_resumes_on_one(monkeypatch):
    restored: list[tuple[int, int]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device=None: torch.tensor([7]))
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device=None: restored.append((int(state[0]), device)))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", _no_all_gpus)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", _no_all_gpus)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    sched = loop.warmup_linear(opt, 10, 0.1)
    result = loop.FitResult(best_epoch=1, best_metric=0.5)
    state = loop._state(1, model, opt, sched, result, None, None, None)
    assert int(state["cuda_rng"][0]) == 7  # this process's GPU only
    loop._resume(_Saved(state), model, opt, sched, result, None)
    assert restored == [(7, 0)]
    restored.clear()
    older = {**state, "cuda_rng": [torch.tensor([1]), torch.tensor([2])]}  # a 2-GPU host's
    loop._resume(_Saved(older), model, opt, sched, result, None)
    assert restored == [(1, 0)]


def _no_all_gpus(*args, **kwargs):
    raise AssertionError("every GPU's RNG state touched")


def _early_stop_rank(rank: int, store: str, out: str) -> None:
    """One gloo process: rank 0 and rank 1 see different best epochs (as float ties in
    validation may make them); both must take rank 0's decision."""
    import torch.distributed as dist

    from ferry.transfer import parallel

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        world, cfg = parallel.current(), TrainConfig(epochs=10, patience=1)
        decisions = []
        for bests in ((3, 1), (1, 3)):  # rank 1 alone would stop; then rank 0 alone would
            result = loop.FitResult(best_epoch=bests[rank], best_metric=0.5)
            decisions.append(loop._patience_spent(cfg, result, 4, "val_accuracy", world, CPU))
        Path(out, f"{rank}.json").write_text(json.dumps(decisions), encoding="utf-8")
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_take_rank_zeros_early_stopping_decision(tmp_path):
    # Fresh interpreters, not forks: a fork of the test process inherits its threads' held
    # locks (the Prefect harness, logging) and may die or hang; a file store needs no port.
    code = ("import sys; from tests.unit.test_cuda_paths import _early_stop_rank; "
            "_early_stop_rank(int(sys.argv[1]), sys.argv[2], sys.argv[3])")
    ranks = [subprocess.Popen([sys.executable, "-c", code, str(rank), str(tmp_path / "store"),
                               str(tmp_path)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for rank in (0, 1)]
    try:
        errors = [rank.communicate(timeout=180)[1] for rank in ranks]
    finally:
        for rank in ranks:
            rank.kill()
    assert [rank.returncode for rank in ranks] == [0, 0], errors
    for rank in (0, 1):
        assert json.loads((tmp_path / f"{rank}.json").read_text()) == [False, True]


@pytest.fixture
def restore_precision():
    yield
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False


def test_tf32_is_set_so_that_old_and_new_readers_agree(monkeypatch, restore_precision):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert runtime.resolve_device("auto") == CUDA
    assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert torch.get_float32_matmul_precision() == "high"  # inductor's autotuning reads it
    assert torch.backends.cuda.matmul.allow_tf32


def test_an_unusable_gpu_is_said_once_and_cuda_is_refused(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(runtime, "nvidia_driver", lambda: "535.104.05")
    runtime._warn_unused_gpu.cache_clear()
    with caplog.at_level(logging.WARNING, logger="ferry.train"):
        assert runtime.resolve_device("auto") == CPU
        assert runtime.resolve_device("auto") == CPU
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "NVIDIA GPU is present" in said[0]
    assert "driver 535.104.05" in said[0] and "CUDA 13.0" in said[0]
    with pytest.raises(ConfigError, match=r"train\.device is cuda but .*driver 535"):
        runtime.resolve_device("cuda")
    monkeypatch.setattr(runtime, "nvidia_driver", lambda: None)
    runtime._warn_unused_gpu.cache_clear()
    caplog.clear()
    assert runtime.resolve_device("auto") == CPU
    assert not caplog.records  # no GPU at all: the CPU is the plan, nothing to say
    runtime._warn_unused_gpu.cache_clear()


def test_cached_blocks_count_as_free_gpu_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 8000))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 3000)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 1000)
    assert batching.fits_on(CUDA, 700)  # a quarter of 1000 free + 2000 cached
    assert not batching.fits_on(CUDA, 800)
    assert batching.fits_on(CPU, 10**15)


def test_resident_token_ids_are_int32_and_the_estimate_counts_four_bytes(monkeypatch):
    from ferry.transfer import modality

    enc = batching.pack([[5, 6, 7], [8], [9, 10]], [0, 1, 0], 0)
    res = batching.Resident.of(enc, CPU, multiple=4)
    assert res.ids.dtype == torch.int32 and res.ids.tolist()[1] == [8, 0, 0, 0]
    batch = next(batching.resident_batches(res, 3, None, 4))
    embedding = torch.nn.Embedding(11, 4)
    assert torch.equal(embedding(batch["input_ids"]), embedding(batch["input_ids"].long()))
    asked: list[int] = []
    monkeypatch.setattr(batching, "fits_on", lambda device, nbytes: asked.append(nbytes))
    modality.Text().resident(enc, CUDA, 4)
    assert asked == [3 * (3 + 4) * 4]  # rows x (longest + multiple) x 4 bytes


def test_runner_rebuilds_grow_the_recompile_budget():
    import torch._dynamo.config as dynamo

    from ferry.transfer import parallel

    before = dynamo.recompile_limit, dynamo.accumulated_recompile_limit
    try:  # (dynamo's config module cannot be monkeypatched: restored by hand)
        runner = runtime.Runner(torch.nn.Linear(2, 2), parallel.World(), CPU, True,
                                shapes=100, custom_loss=False)
        for _ in range(2):  # gradual unfreezing: each rebuild's graphs join the earlier ones
            runner.rebuild()
        assert runner.builds == 3 and runner.receipt(TrainConfig())["compiled"]
        assert dynamo.recompile_limit >= 300 and dynamo.accumulated_recompile_limit >= 300
    finally:
        dynamo.recompile_limit, dynamo.accumulated_recompile_limit = before
