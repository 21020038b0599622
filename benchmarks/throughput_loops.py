"""The training loops ``benchmarks/throughput.py`` times: Ferry's ``fit`` and four Trainer rows.

Every run trains a fresh model (same seed, same init) for two epochs and returns one
``Measure``: epoch 2's seconds (epoch 1 is the warm-up: CUDA start, autotuning, compile) and
the wall seconds of the whole fine-tune from building the loop to its last step (setup,
compile and warm-up included: what a user waits for).

The Trainer rows, all with bf16 on a GPU, fused AdamW, length-grouped batches, pad-to-8, the
same clipping as Ferry (``train.max_grad_norm``) and a model whose ``forward`` names its
arguments (with ``**kwargs`` the Trainer counts ``num_items_in_batch``, a host sync per step):

* ``trainer-default``: the Trainer's defaults otherwise (its loss NaN filter syncs each step,
  blocking host-to-device copies, loader workers re-spawned every epoch);
* ``trainer-tuned``: ``logging_nan_inf_filter=False``, ``accelerator_config.non_blocking`` with
  pinned memory, persistent loader workers;
* ``trainer-tuned-compiled``: the same with ``torch_compile=True``;
* ``trainer-packed``: tuned, padding-free batches (transformers' ``DataCollatorWithFlattening``,
  one row per batch; ``--trainer-packing rows``: Ferry's rows of 128 tokens), compiled when
  Ferry is (``--ferry-compile``: on a GPU by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ferry.config import TrainConfig
from ferry.transfer import strategies
from ferry.transfer.batching import Resident, image_batches, resident_batches
from ferry.transfer.loop import compiling, fit

CLIP = TrainConfig().max_grad_norm  # Ferry's default clipping, given to every row
TRAINER_ROWS = ("trainer-default", "trainer-tuned", "trainer-tuned-compiled", "trainer-packed")
FERRY_ROWS = ("ferry", "ferry-packed")


@dataclasses.dataclass
class Case:
    name: str
    model: str
    kind: str  # text | image
    length: str | int = 128  # 128, or "real" (the default dataset's texts); image: pixels


@dataclasses.dataclass
class Measure:
    seconds: float  # epoch 2
    warmup: float  # epoch 1
    finish: float  # the whole fine-tune, setup to last step
    peak_gib: float | None


# ---- Ferry ------------------------------------------------------------------------------

def run_ferry(model: nn.Module, case: Case, data, args, device: torch.device,
              packed: bool) -> Measure:
    """Ferry's ``fit`` as the flow calls it (resident data, compile on a GPU), two epochs,
    ``train.packing`` on or off."""
    cfg = TrainConfig(epochs=2, batch_size=args.batch_size, device=device.type,
                      log_every=10**9, patience=5, lr=5e-5, compile=args.ferry_compile,
                      compile_mode=args.compile_mode, max_grad_norm=CLIP,
                      packing="on" if packed else "off")
    began = time.perf_counter()
    groups = strategies.Full(backbone_lr_factor=1.0).configure(model, cfg.lr, 0.01)
    multiple = cfg.compile_width_multiple if compiling(cfg, device) else 8
    if case.kind == "text":
        res = Resident.of(data, device, multiple)
        batches = lambda e: resident_batches(res, args.batch_size, e, multiple)  # noqa: E731
    else:
        pixels = data.to(device)
        batches = lambda e: image_batches(pixels, args.batch_size, e)  # noqa: E731
    result = fit(model, groups, batches, -(-len(data) // args.batch_size),
                 lambda net: {"val_accuracy": 0.0}, cfg, None)
    sync(device)
    finish = time.perf_counter() - began
    if result.runtime.get("packed") != packed:
        raise RuntimeError(f"fit ran with packed={result.runtime.get('packed')}, "
                           f"asked {packed}")
    first, last = result.history
    return Measure(last["epoch_seconds"], first["epoch_seconds"], finish, peak(device))


# ---- the Trainer ------------------------------------------------------------------------

def _loss(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"loss": nn.functional.cross_entropy(logits.float(), labels), "logits": logits}


class _LossModel(nn.Module):
    """Ferry's classifier behind the Trainer's (inputs..., labels) -> {'loss'} interface,
    with named arguments only: no ``**kwargs``, so no ``num_items_in_batch`` count."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None,
                pixel_values: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        batch = ({"pixel_values": pixel_values} if pixel_values is not None else
                 {"input_ids": input_ids, "attention_mask": attention_mask})
        return _loss(self.inner(batch), labels)


class _PackedLossModel(nn.Module):
    """The padding-free forward: the 4-D block-diagonal boolean mask is built on the device
    from ``seq_idx`` (``ferry.models.packed.mask``, via the classifier's packed path), so the
    loader ships T ints per batch instead of a T x T mask; attention stays inside each text
    and each text is pooled over its own tokens, exactly as in the padded batch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor,
                seq_idx: torch.Tensor, starts: torch.Tensor,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        batch = {"input_ids": input_ids, "position_ids": position_ids,
                 "seq": seq_idx.long(), "starts": starts}
        return _loss(self.inner(batch), labels)


def _flattening_collator() -> Any:
    from transformers import DataCollatorWithFlattening

    class FlattenForClassification(DataCollatorWithFlattening):
        """transformers' padding-free collator (one 1 x T row, ``position_ids`` restarting
        per text, ``seq_idx``) with one label per text instead of per token."""

        def __call__(self, features, return_tensors=None, separator_id=None):
            ids = [{"input_ids": f["input_ids"]} for f in features]
            flat = super().__call__(ids, return_tensors, separator_id)
            lengths = torch.tensor([len(f["input_ids"]) for f in features])
            return {"input_ids": flat["input_ids"], "position_ids": flat["position_ids"],
                    "seq_idx": flat["seq_idx"], "starts": torch.cumsum(lengths, 0) - lengths,
                    "labels": torch.tensor([f["labels"] for f in features])}

    return FlattenForClassification(return_position_ids=True, return_seq_idx=True)


def _rows_collator(multiple: int) -> Callable[[list[dict]], dict]:
    """Ferry's packed layout built in the loader (``--trainer-packing rows``): the texts
    first-fit into rows of 128 tokens (``ferry.transfer.packing.flatten``), so attention's
    masked-out work is a row's, not the whole batch's."""
    from ferry.transfer import packing

    def collate(features: list[dict]) -> dict:
        lengths = torch.tensor([len(f["input_ids"]) for f in features])
        ids = torch.zeros(len(features), int(lengths.max()), dtype=torch.int64)
        for i, f in enumerate(features):
            ids[i, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
        flat = packing.flatten({"input_ids": ids, "lengths": lengths}, multiple)
        return {"input_ids": flat["input_ids"], "position_ids": flat["position_ids"],
                "seq_idx": flat["seq"], "starts": flat["starts"],
                "labels": torch.tensor([f["labels"] for f in features])}

    return collate


def _rows_and_collator(case: Case, data, packed: bool, args,
                       device: torch.device) -> tuple[list[dict], Any]:
    from transformers import DataCollatorWithPadding, default_data_collator

    if case.kind == "image":
        return [{"pixel_values": data.pixels[i], "labels": int(data.labels[i])}
                for i in range(len(data))], default_data_collator
    rows = [{"input_ids": data.ids[data.offsets[i]:data.offsets[i + 1]].tolist(),
             "labels": int(data.labels[i])} for i in range(len(data))]
    if packed and args.trainer_packing == "rows":
        return rows, _rows_collator(8 if device.type == "cuda" else 1)
    if packed:
        return rows, _flattening_collator()
    return rows, DataCollatorWithPadding(_pad_only_tokenizer(), pad_to_multiple_of=8)


def _pad_only_tokenizer() -> Any:
    """The smallest tokenizer object DataCollatorWithPadding can pad with (pad id 0)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1}, "[UNK]")))
    tok.pad_token = "[PAD]"
    return tok


def training_args(row: str, case: Case, args, device: torch.device, out: str) -> Any:
    """The row's TrainingArguments. ``tf32=None``: TF32 is the process's one setting
    (``throughput.set_tf32``); ``torch_compile`` with bf16 makes transformers turn on TF32
    through ``torch.backends.fp32_precision`` all the same, so that generic switch is put
    back as it was (the backend-level settings the benchmark made win over it anyway)."""
    from transformers import TrainingArguments

    gpu = device.type == "cuda"
    workers = 2 if gpu else 0  # (2 CPU cores here: loader processes would only compete)
    tuned = row != "trainer-default"
    compiled = row == "trainer-tuned-compiled" or (
        row == "trainer-packed" and compiling(TrainConfig(compile=args.ferry_compile), device))
    before = torch.backends.fp32_precision
    targs = TrainingArguments(
        output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=2,
        learning_rate=5e-5, weight_decay=0.01, bf16=gpu, tf32=None, max_grad_norm=CLIP,
        train_sampling_strategy="group_by_length" if case.kind == "text" else "random",
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=workers, dataloader_pin_memory=gpu, use_cpu=not gpu,
        optim="adamw_torch_fused", lr_scheduler_type="linear", warmup_steps=0.1, seed=0,
        remove_unused_columns=False, torch_compile=compiled,
        torch_compile_backend=args.trainer_compile_backend if compiled else None,
        torch_compile_mode=args.compile_mode if compiled else None,
        logging_nan_inf_filter=not tuned,
        accelerator_config={"non_blocking": tuned and gpu},
        dataloader_persistent_workers=tuned and workers > 0)
    torch.backends.fp32_precision = before
    return targs


def run_trainer(model: nn.Module, case: Case, data, args, device: torch.device,
                row: str) -> Measure:
    """One Trainer row, two epochs; the trainer (its loader workers, its optimizer) is
    dropped before returning so the next row starts from freed memory."""
    from datasets_shim import ListDataset
    from transformers import Trainer, TrainerCallback

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_epoch_begin(self, *a, **k):
            sync(device)
            self.marks.append(time.perf_counter())

        def on_epoch_end(self, *a, **k):
            sync(device)
            self.marks.append(time.perf_counter())

    packed = row == "trainer-packed"
    began = time.perf_counter()
    rows, collator = _rows_and_collator(case, data, packed, args, device)
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as out:
        wrapped = (_PackedLossModel if packed else _LossModel)(model)
        trainer = Trainer(model=wrapped, args=training_args(row, case, args, device, out),
                          train_dataset=ListDataset(rows), data_collator=collator,
                          callbacks=[timer])
        with contextlib.redirect_stdout(io.StringIO()):  # its end-of-training metrics line
            trainer.train()
        sync(device)
        finish = time.perf_counter() - began
        mem = peak(device)
        del trainer, wrapped
    t0, t1, t2, t3 = timer.marks
    return Measure(t3 - t2, t1 - t0, finish, mem)


# ---- device helpers ---------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
