"""Fine-tuning throughput: Ferry's training loop vs the Hugging Face Trainer, tuned.

Each case runs every row on the same device, model (random weights, built from a config),
data, batch size, clipping (``train.max_grad_norm``) and two epochs. Epoch 1 is the warm-up
(CUDA start, cuDNN autotuning, ``torch.compile``); epoch 2 is timed, ending on a device sync;
``finish s`` is the wall time of the whole fine-tune, setup and compile included. Rows:
``trainer-default``, ``trainer-tuned`` (no per-step host syncs, non-blocking copies from
pinned memory, persistent workers), ``trainer-tuned-compiled`` (``torch_compile``),
``trainer-packed`` (padding-free), ``ferry`` (``train.packing: off``) and ``ferry-packed``
(``on``); ``throughput_loops.py`` has the exact settings. Every row runs ``--repeats`` times,
the order reversed on every other repeat, caches freed between runs; the table prints
medians with min-max, tokens/s (real tokens), MFU over the measured dense matmul rate (bf16
on a GPU, fp32 on a CPU) and over the device's data-sheet dense bf16 peak (``spec%``; "-"
for a device not in ``throughput_report.SPEC_BF16``), peak GPU memory, and the ratios Ferry
and Ferry packed over the best Trainer row. Images have no packed rows (nothing to unpad).

Packing for the Trainer. transformers 5.23 detects packed sequences from ``position_ids``
only in ``masking_utils.create_causal_mask`` (decoders) and in the flash-attention kernels;
BERT is an encoder: ``create_bidirectional_mask`` is called without ``position_ids``, so
with ``attn_implementation="sdpa"`` and ``DataCollatorWithFlattening`` every token would
attend across the whole packed row (no flash-attn wheel here, and none for the CPU). The
Trainer therefore gets what Ferry has: the collator (``DataCollatorWithFlattening`` with
``seq_idx``) flattens the batch with restarting ``position_ids``, and the model builds the
4-D boolean block-diagonal mask on the device (``ferry.models.packed``), the same exact
attention and per-text pooling; the line ``packed agreement`` checks Ferry's packed step
against its padded one. transformers' collator makes one row of the whole batch, so SDPA's
masked attention costs (batch tokens)^2; ``--trainer-packing rows`` gives the Trainer
Ferry's layout instead (texts first-fit into rows of 128 tokens), isolating the loops.

TF32 is one process-wide setting made once, as Ferry makes it (``set_tf32``: the
``torch.backends.cuda.matmul.fp32_precision`` API); the Trainer gets ``tf32=None``.

    python benchmarks/throughput.py                 # on a GPU: the full cases
    python benchmarks/throughput.py --smoke         # tiny sizes on the CPU (CI runs this;
                                                    # 1 thread, the Trainer compiled with
                                                    # aot_eager: the code paths, not speeds)
    python benchmarks/throughput.py --cases minilm-real --samples 512 --repeats 3
    python benchmarks/throughput.py --rows trainer-tuned ferry ferry-packed
"""

from __future__ import annotations

import argparse
import functools
import gc
import tempfile
import time
from pathlib import Path

import torch
from throughput_loops import Case, sync
from throughput_report import HEADER, ROWS, packed_agreement, report, run_case, spec_peak

from ferry.config import AugmentConfig, FerryConfig, ModelConfig
from ferry.data import recipes
from ferry.data.loading import read_table
from ferry.data.splits import split_frame
from ferry.env import apply_offline_defaults
from ferry.transfer.batching import Encoded, Pixels
from ferry.transfer.loop import resolve_device

TEXT = {"minilm": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                       intermediate_size=1536),
        "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072),
        "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=128)}
VISION = {"resnet50": "resnet50", "efficientnet": "efficientnet_b0", "tiny-cnn": "resnet10t"}
CASES = ["minilm-128", "minilm-real", "bert-base-128", "bert-base-real", "resnet50-224",
         "efficientnet-224"]
SMOKE = ["tiny-32", "tiny-real", "tiny-cnn-32"]


def parse_case(name: str) -> Case:
    model, _, tail = name.rpartition("-")
    if model in VISION:
        return Case(name, model, "image", int(tail))
    return Case(name, model, "text", "real" if tail == "real" else int(tail))


# ---- data -------------------------------------------------------------------------------

@functools.cache
def load_texts(n: int) -> tuple[list[str], list[int]]:
    """The default dataset's training texts (rebuilt from the recipe into a temp folder,
    once per process)."""
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
    parameter per real token plus attention's 4*layers*hidden*len^2 per sequence (the useful
    work: a packed row's masked-out attention and a padded batch's pads are not counted);
    images: the forward pass counted by torch's FlopCounterMode on one image."""
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
    sync(device)
    reps, began = 20 if device.type == "cuda" else 10, time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - began)


def set_tf32(device: torch.device) -> None:
    """TF32 for fp32 matmuls and convolutions on a GPU, once for the process, with Ferry's
    own call (``ferry.transfer.runtime.tf32``: the per-backend ``fp32_precision`` API, the
    legacy precision kept in step); the Trainer's ``tf32=None`` leaves it, and the generic
    switch its ``torch_compile`` flips is put back (``throughput_loops.training_args``)."""
    if device.type == "cuda":
        from ferry.transfer.runtime import tf32

        tf32()


# ---- running ----------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=None, help=f"default: {' '.join(CASES)}")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=ROWS,
                        help="the loops to run (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny models and sizes (CPU/CI)")
    parser.add_argument("--samples", type=int, default=None, help="texts per epoch")
    parser.add_argument("--image-samples", type=int, default=None, help="images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per row (medians)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads for torch (default: torch's; --smoke: 1)")
    parser.add_argument("--ferry-compile", default="auto", choices=["auto", "on", "off"])
    parser.add_argument("--compile-mode", default="default", help="both sides' torch.compile")
    parser.add_argument("--trainer-compile-backend", default=None,
                        help="default: inductor; --smoke on a CPU: aot_eager (no C++ codegen)")
    parser.add_argument("--trainer-packing", default="flatten", choices=["flatten", "rows"],
                        help="trainer-packed: transformers' one-row flattening collator, or "
                        "Ferry's rows of 128 tokens")
    return parser.parse_args()


def agreement_line(args) -> str:
    """The packed Ferry step against the padded one on one tiny real-text batch (fp32)."""
    enc = text_data(Case("tiny-real", "tiny", "text", "real"), args.samples)
    d = packed_agreement(text_model("tiny"), enc, min(args.batch_size, 16))
    return (f"packed agreement (tiny BERT, fp32, {d['tokens']} tokens packed vs "
            f"{d['padded']} padded): max|dlogits| {d['logits']:.2e}  |dloss| "
            f"{d['loss']:.2e}  max|dgrad| {d['grad']:.2e}")


def main() -> None:
    args = parse_args()
    apply_offline_defaults()
    device = resolve_device(args.device)
    set_tf32(device)
    gpu = device.type == "cuda"
    if args.smoke:
        args.batch_size = min(args.batch_size, 8)
        # One thread: tiny ops on a shared CI machine otherwise wait at OpenMP barriers on a
        # descheduled second thread (measured here: 0.1 s per run alone, 4 s beside a busy
        # process); smoke figures are not speeds anyway.
        args.threads = args.threads or 1
        if not gpu:  # a cold inductor cache compiles C++ for ~70 s here; CI's is always cold
            args.trainer_compile_backend = args.trainer_compile_backend or "aot_eager"
    args.trainer_compile_backend = args.trainer_compile_backend or "inductor"
    if args.threads:
        torch.set_num_threads(args.threads)
    args.samples = args.samples or (8192 if gpu else 16 if args.smoke else 128)
    args.image_samples = args.image_samples or (2048 if gpu else 8 if args.smoke else 32)
    measured = matmul_peak(device)
    label = torch.cuda.get_device_name(device) if gpu else \
        f"CPU ({torch.get_num_threads()} threads)"
    spec = spec_peak(label) if gpu else None
    print(f"device: {label}; measured {'bf16' if gpu else 'fp32'} matmul peak "
          f"{measured / 1e12:.1f} TFLOP/s; spec dense bf16 "
          f"{f'{spec / 1e12:.0f} TFLOP/s' if spec else '-'}; batch {args.batch_size}; "
          f"{args.samples} texts / {args.image_samples} images per epoch; {args.repeats} "
          f"repeats; Trainer compile backend {args.trainer_compile_backend}; torch "
          f"{torch.__version__}")
    print(agreement_line(args))
    print(HEADER)
    # Long-lived objects (torch, transformers, the data) out of the collector's sight: the
    # gc.collect between runs, and accelerate's at every train() start and end, then take
    # milliseconds instead of ~0.5 s of scanning the imported modules on every run.
    gc.collect()
    gc.freeze()
    for name in args.cases or (SMOKE if args.smoke else CASES):
        case = parse_case(name)
        build = text_model if case.kind == "text" else image_model
        data = text_data(case, args.samples) if case.kind == "text" else \
            image_data(int(case.length), args.image_samples)
        flops = train_flops(build(case.model), case, data)
        tokens = int(data.lengths.sum()) if case.kind == "text" else 0
        runs = run_case(case, build, data, args, device)
        report(case, runs, len(data), tokens, flops, (measured, spec), args, device)


if __name__ == "__main__":
    main()
