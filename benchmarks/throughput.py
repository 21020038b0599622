"""Fine-tuning throughput: Ferry's training loop vs the Hugging Face Trainer.

Same model (Ferry's TextClassifier on the packaged MiniLM), same data (the default dataset's
training split, real length distribution), same batch size, same device, same number of
optimizer steps. Prints samples/s and tokens/s of each and the ratio Ferry/Trainer.

    python benchmarks/throughput.py                      # CPU-sized defaults
    python benchmarks/throughput.py --samples 4096 --epochs 2 --batch-size 64   # on a GPU
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from ferry.config import FerryConfig, TrainConfig
from ferry.data import recipes
from ferry.data.loading import read_table
from ferry.data.splits import split_frame
from ferry.env import apply_offline_defaults
from ferry.models import classifier
from ferry.models.sources import resolve
from ferry.transfer import strategies
from ferry.transfer.batching import encode, text_batches
from ferry.transfer.loop import fit, resolve_device


def load_texts(n: int) -> tuple[list[str], list[int]]:
    """The default dataset's training texts (rebuilt from the recipe into a temp folder)."""
    cfg = FerryConfig()
    path = recipes.build("rotten-tomatoes", Path(tempfile.mkdtemp()) / "rt.csv")
    train = split_frame(read_table(path, ["text", "label"]), cfg.data.model_copy(
        update={"path": path}))["train"].head(n)
    labels = [cfg.data.labels.index(v) for v in train["label"]]
    return train["text"].tolist(), labels


def ferry_loop(folder: str, enc, args, device) -> float:
    torch.manual_seed(0)
    model = classifier.build(folder, 2, FerryConfig().model)
    groups = strategies.Full().configure(model, 5e-4, 0.01)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, device=device.type,
                      log_every=10**9)
    steps = -(-len(enc) // args.batch_size)
    began = time.perf_counter()
    fit(model, groups, lambda e: text_batches(enc, args.batch_size, e), steps,
        lambda net: {"val_accuracy": 0.0}, cfg, None)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


class _TrainerModel(torch.nn.Module):
    """Ferry's classifier behind the (input_ids, attention_mask, labels) -> loss interface."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, labels=None):
        logits = self.inner({"input_ids": input_ids, "attention_mask": attention_mask})
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        return {"loss": loss, "logits": logits}


def hf_trainer(folder: str, texts, labels, args, device) -> float:
    from datasets_shim import ListDataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(0)
    tok = classifier.load_tokenizer(folder)
    model = _TrainerModel(classifier.build(folder, 2, FerryConfig().model))
    enc = tok(texts, truncation=True, max_length=128)
    data = ListDataset([{"input_ids": i, "attention_mask": m, "labels": y}
                        for i, m, y in zip(enc["input_ids"], enc["attention_mask"], labels,
                                           strict=True)])
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs, learning_rate=5e-5, bf16=device.type == "cuda",
        train_sampling_strategy="group_by_length", report_to="none", save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True, dataloader_num_workers=0, use_cpu=device.type == "cpu",
        optim="adamw_torch_fused" if device.type == "cuda" else "adamw_torch",
        lr_scheduler_type="linear", warmup_steps=0.1)
    trainer = Trainer(model=model, args=targs, train_dataset=data,
                      data_collator=DataCollatorWithPadding(tok, pad_to_multiple_of=8))
    began = time.perf_counter()
    trainer.train()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    apply_offline_defaults()
    device = resolve_device(args.device)
    folder = resolve(FerryConfig().model).path
    texts, labels = load_texts(args.samples)
    enc = encode(classifier.load_tokenizer(folder), texts, labels, 128)
    tokens = int(enc.lengths.sum()) * args.epochs
    n = len(texts) * args.epochs
    t_trainer = hf_trainer(folder, texts, labels, args, device)
    t_ferry = ferry_loop(folder, enc, args, device)
    print(f"device={device.type} model=MiniLM-L6 (packaged) samples={len(texts)} "
          f"epochs={args.epochs} batch={args.batch_size} mean_tokens={tokens / n:.1f}")
    print(f"{'loop':<10}{'samples/s':>12}{'tokens/s':>12}{'seconds':>10}")
    for name, secs in (("trainer", t_trainer), ("ferry", t_ferry)):
        print(f"{name:<10}{n / secs:>12.1f}{tokens / secs:>12.0f}{secs:>10.1f}")
    print(f"ratio ferry/trainer (samples/s): {t_trainer / t_ferry:.2f}x")


if __name__ == "__main__":
    main()
