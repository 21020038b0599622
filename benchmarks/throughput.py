"""Fine-tuning throughput: Ferry's training loop vs the Hugging Face Trainer.

Each case runs both on the same device, model (random weights, built from a config), data,
batch size and number of epochs. Epoch 1 is the warm-up (CUDA start, cuDNN autotuning,
``torch.compile``; its seconds are printed); epoch 2 is timed, ending on a device sync.
Cases: MiniLM-L6 and BERT-base at fixed length 128 and on the default dataset's real length
distribution, ResNet-50 and EfficientNet-B0 at 224 px. The Trainer gets its fast settings:
bf16, fused AdamW, TF32, length grouping, padding to multiples of 8, pinned memory, loader
workers; Ferry runs its defaults (``train.fast``, ``train.compile: auto``). Prints samples/s,
tokens/s, MFU (model FLOPs over the measured dense matmul rate: bf16 on a GPU, fp32 on a
CPU), peak GPU memory and the ratio Ferry/Trainer.

    python benchmarks/throughput.py                 # on a GPU: the full cases
    python benchmarks/throughput.py --smoke         # tiny sizes on the CPU (CI runs this)
    python benchmarks/throughput.py --cases minilm-128 bert-base-128 --samples 8192
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ferry.config import AugmentConfig, FerryConfig, ModelConfig, TrainConfig
from ferry.data import recipes
from ferry.data.loading import read_table
from ferry.data.splits import split_frame
from ferry.env import apply_offline_defaults
from ferry.transfer import strategies
from ferry.transfer.batching import Encoded, Pixels, Resident, image_batches, resident_batches
from ferry.transfer.loop import compiling, fit, resolve_device

TEXT = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                       intermediate_size=1536),
        "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072),
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)}
VISION = {"resnet50": "resnet50", "efficientnet": "efficientnet_b0", "tiny-cnn": "resnet10t"}
CASES = ["minilm-128", "minilm-real", "bert-base-128", "bert-base-real", "resnet50-224",
         "efficientnet-224"]
SMOKE = ["tiny-128", "tiny-real", "tiny-cnn-64"]


@dataclasses.dataclass
class Case:
    name: str
    model: str
    kind: str  # text | image
    length: str | int = 128  # 128, or "real" (the default dataset's texts); image: pixels


@dataclasses.dataclass
class Measure:
    seconds: float
    samples: int
    tokens: int
    flops: float
    warmup: float
    peak_gib: float | None


def parse_case(name: str) -> Case:
    model, _, tail = name.rpartition("-")
    if model in VISION:
        return Case(name, model, "image", int(tail))
    return Case(name, model, "text", "real" if tail == "real" else int(tail))


# ---- data -------------------------------------------------------------------------------

def load_texts(n: int) -> tuple[list[str], list[int]]:
    """The default dataset's training texts (rebuilt from the recipe into a temp folder)."""
    cfg = FerryConfig()
    path = recipes.build("rotten-tomatoes", Path(tempfile.mkdtemp()) / "rt.csv")
    train = split_frame(read_table(path, ["text", "label"]), cfg.data.model_copy(
        update={"path": path}))["train"].head(n)
    labels = [cfg.data.labels.index(v) for v in train["label"]]
    return train["text"].tolist(), labels


def text_data(case: Case, n: int) -> Encoded:
    """Token ids: uniform random at a fixed length, or the real texts through the packaged
    MiniLM tokenizer (BERT's uncased WordPiece vocabulary, as both configs use)."""
    gen = torch.Generator().manual_seed(0)
    if case.length == "real":
        from ferry.models import classifier
        from ferry.models.sources import resolve
        from ferry.transfer.batching import encode

        texts, labels = load_texts(n)
        reps = -(-n // len(texts))  # a small training split is repeated to n samples
        tok = classifier.load_tokenizer(resolve(FerryConfig().model).path)
        return encode(tok, (texts * reps)[:n], (labels * reps)[:n], 128)
    length = int(case.length)
    ids = torch.randint(1000, 30000, (n * length,), generator=gen, dtype=torch.int32)
    return Encoded(ids, torch.arange(n + 1) * length,
                   torch.randint(0, 2, (n,), generator=gen), pad_id=0)


def image_data(size: int, n: int) -> Pixels:
    gen = torch.Generator().manual_seed(0)
    return Pixels(torch.randint(0, 256, (n, 3, size, size), generator=gen, dtype=torch.uint8),
                  torch.randint(0, 10, (n,), generator=gen))


# ---- models -----------------------------------------------------------------------------

def text_model(name: str) -> torch.nn.Module:
    from transformers import AutoModel, BertConfig

    from ferry.models.classifier import TextClassifier

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, max_position_embeddings=512, **TEXT[name])
    return TextClassifier(AutoModel.from_config(config, attn_implementation="sdpa"), 2,
                          "mean", 0.1)


def image_model(name: str) -> torch.nn.Module:
    from ferry.models import vision

    torch.manual_seed(0)
    return vision.build(ModelConfig(source="timm", name=VISION[name]), None, 10, 0.1,
                        AugmentConfig())


def train_flops(model: torch.nn.Module, case: Case, data) -> float:
    """Training FLOPs of one epoch: 3x the forward pass. Text: 2 FLOPs per non-embedding
    parameter per real token plus attention's 4*layers*hidden*len^2 per sequence; images:
    the forward pass counted by torch's FlopCounterMode on one image."""
    if case.kind == "text":
        cfg = model.encoder.config
        emb = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
        dense = sum(p.numel() for p in model.parameters()) - emb
        lens = data.lengths.double()
        fwd = 2 * dense * lens.sum() + 4 * cfg.num_hidden_layers * cfg.hidden_size * \
            (lens ** 2).sum()
        return 3 * float(fwd)
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model({"pixel_values": data.pixels[:1]})
    return 3.0 * counter.get_total_flops() * len(data)


def matmul_peak(device: torch.device) -> float:
    """Dense matmul FLOP/s measured here: bf16 8192^3 on a GPU, fp32 2048^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (2048, torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    _sync(device)
    reps, began = 20 if device.type == "cuda" else 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - began)


# ---- the two loops ----------------------------------------------------------------------

def run_ferry(model, case: Case, data, args, device) -> Measure:
    """Ferry's ``fit`` as the flow calls it (resident data, compile on a GPU), two epochs."""
    cfg = TrainConfig(epochs=2, batch_size=args.batch_size, device=device.type,
                      log_every=10**9, patience=5, lr=5e-5, compile=args.ferry_compile,
                      compile_mode=args.compile_mode)
    groups = strategies.Full(backbone_lr_factor=1.0).configure(model, cfg.lr, 0.01)
    multiple = cfg.compile_width_multiple if compiling(cfg, device) else 8
    if case.kind == "text":
        res = Resident.of(data, device, multiple)
        batches = lambda e: resident_batches(res, args.batch_size, e, multiple)  # noqa: E731
    else:
        pixels = data.to(device)
        batches = lambda e: image_batches(pixels, args.batch_size, e)  # noqa: E731
    _reset_peak(device)
    result = fit(model, groups, batches, -(-len(data) // args.batch_size),
                 lambda net: {"val_accuracy": 0.0}, cfg, None)
    first, last = result.history
    return Measure(last["epoch_seconds"], len(data), _tokens(case, data), 0.0,
                   first["epoch_seconds"], _peak(device))


class _LossModel(torch.nn.Module):
    """Ferry's classifier behind the Trainer's (inputs..., labels) -> {'loss'} interface."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, labels=None, **batch):
        logits = self.inner(batch)
        return {"loss": torch.nn.functional.cross_entropy(logits.float(), labels),
                "logits": logits}


def run_trainer(model, case: Case, data, args, device) -> Measure:
    from datasets_shim import ListDataset
    from transformers import (
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    class EpochTimer(TrainerCallback):
        def __init__(self) -> None:
            self.marks: list[float] = []

        def on_epoch_begin(self, *a, **k):
            _sync(device)
            self.marks.append(time.perf_counter())

        def on_epoch_end(self, *a, **k):
            _sync(device)
            self.marks.append(time.perf_counter())

    gpu = device.type == "cuda"
    if case.kind == "text":
        rows = [{"input_ids": data.ids[data.offsets[i]:data.offsets[i + 1]].tolist(),
                 "labels": int(data.labels[i])} for i in range(len(data))]
        from transformers import PreTrainedTokenizerFast

        collator = DataCollatorWithPadding(_pad_only_tokenizer(PreTrainedTokenizerFast),
                                           pad_to_multiple_of=8)
    else:
        rows = [{"pixel_values": data.pixels[i], "labels": int(data.labels[i])}
                for i in range(len(data))]
        collator = default_data_collator
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
        num_train_epochs=2, learning_rate=5e-5, bf16=gpu, tf32=gpu or None,
        train_sampling_strategy="group_by_length" if case.kind == "text" else "random",
        report_to="none", save_strategy="no", logging_strategy="no", disable_tqdm=True,
        dataloader_num_workers=2 if gpu else 0, dataloader_pin_memory=gpu,
        use_cpu=not gpu, optim="adamw_torch_fused", lr_scheduler_type="linear",
        warmup_steps=0.1, seed=0, remove_unused_columns=False)
    timer = EpochTimer()
    trainer = Trainer(model=_LossModel(model), args=targs, train_dataset=ListDataset(rows),
                      data_collator=collator, callbacks=[timer])
    _reset_peak(device)
    with contextlib.redirect_stdout(io.StringIO()):  # its end-of-training metrics line
        trainer.train()
    t0, t1, t2, t3 = timer.marks
    return Measure(t3 - t2, len(data), _tokens(case, data), 0.0, t1 - t0, _peak(device))


def _pad_only_tokenizer(cls):
    """The smallest tokenizer object DataCollatorWithPadding can pad with (pad id 0)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel

    tok = cls(tokenizer_object=Tokenizer(WordLevel({"[PAD]": 0, "[UNK]": 1}, "[UNK]")))
    tok.pad_token = "[PAD]"
    return tok


# ---- running and printing ---------------------------------------------------------------

def _tokens(case: Case, data) -> int:
    return int(data.lengths.sum()) if case.kind == "text" else 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def measure(case: Case, args, device) -> dict[str, Measure]:
    build: Callable = text_model if case.kind == "text" else image_model
    size = case.length if case.kind == "image" else 0
    data = text_data(case, args.samples) if case.kind == "text" else \
        image_data(int(size), args.image_samples)
    flops = train_flops(build(case.model), case, data)
    out = {}
    for name, runner in (("trainer", run_trainer), ("ferry", run_ferry)):
        m = runner(build(case.model), case, data, args, device)
        m.flops = flops
        out[name] = m
    return out


def report(case: Case, results: dict[str, Measure], peak: float) -> None:
    for name, m in results.items():
        rate = m.samples / m.seconds
        tokens = f"{m.tokens / m.seconds:>11.0f}" if m.tokens else f"{'-':>11}"
        mem = f"{m.peak_gib:>8.1f}" if m.peak_gib is not None else f"{'-':>8}"
        mfu = 100 * m.flops / m.seconds / peak
        print(f"{case.name:<18}{name:<9}{rate:>10.1f}{tokens}{mfu:>7.1f}{mem}{m.warmup:>9.1f}")
    ratio = results["trainer"].seconds / results["ferry"].seconds
    print(f"{case.name:<18}{'ratio':<9}{ratio:>9.2f}x  ferry/trainer samples/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=None, help=f"default: {' '.join(CASES)}")
    parser.add_argument("--smoke", action="store_true", help="tiny models and sizes (CPU/CI)")
    parser.add_argument("--samples", type=int, default=None, help="texts per epoch")
    parser.add_argument("--image-samples", type=int, default=None, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--ferry-compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--compile-mode", default="default")
    args = parser.parse_args()
    apply_offline_defaults()
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    if args.smoke:
        args.batch_size = min(args.batch_size, 16)
    args.samples = args.samples or (8192 if gpu else 64 if args.smoke else 128)
    args.image_samples = args.image_samples or (2048 if gpu else 32)
    names = args.cases or (SMOKE if args.smoke else CASES)
    peak = matmul_peak(device)
    label = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} " \
        "threads)"
    print(f"device: {label}; measured {'bf16' if gpu else 'fp32'} matmul peak "
          f"{peak / 1e12:.1f} TFLOP/s; batch {args.batch_size}; {args.samples} texts / "
          f"{args.image_samples} images per epoch; torch {torch.__version__}")
    print(f"{'case':<18}{'loop':<9}{'samples/s':>10}{'tokens/s':>11}{'MFU%':>7}"
          f"{'peakGiB':>8}{'warmup s':>9}")
    for name in names:
        case = parse_case(name)
        report(case, measure(case, args, device), peak)


if __name__ == "__main__":
    main()
