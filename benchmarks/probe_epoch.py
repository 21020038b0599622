"""Linear probe: an epoch on cached features vs an epoch that runs the frozen backbone.

Both train the same head (Ferry's ``Head``, AdamW, same batches) on the default dataset's
training split; the second recomputes the frozen packaged-MiniLM features for every batch, as
a probe without a feature cache would. Prints seconds per epoch of each and the speed-up.

    python benchmarks/probe_epoch.py            # whole training split (~3.9k texts)
    python benchmarks/probe_epoch.py --samples 1000 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from throughput import load_texts

from ferry.config import FerryConfig
from ferry.env import apply_offline_defaults
from ferry.models import classifier
from ferry.models.sources import resolve
from ferry.transfer import inference
from ferry.transfer.batching import encode, feature_batches, text_batches
from ferry.transfer.loop import resolve_device


def head_epoch(model, batches, features_of, device) -> float:
    """One optimizer pass of the head; ``features_of(batch)`` supplies its input."""
    opt = torch.optim.AdamW(model.head.parameters(), lr=3e-3, fused=True)
    began = time.perf_counter()
    for batch in batches:
        with torch.no_grad():
            feats = features_of(batch)
        loss = torch.nn.functional.cross_entropy(model.head({"features": feats}),
                                                 batch["labels"].to(device))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="cached epochs to average")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    apply_offline_defaults()
    device = resolve_device(args.device)
    cfg = FerryConfig()
    source = resolve(cfg.model)
    texts, labels = load_texts(args.samples)
    enc = encode(classifier.load_tokenizer(source.path), texts, labels, cfg.model.max_length)
    model = classifier.build(source.path, 2, cfg.model).to(device).eval()
    model.head.train()

    def backbone(batch):
        batch = {k: v.to(device) for k, v in batch.items()}
        return model.features(batch["input_ids"], batch["attention_mask"])

    extract_began = time.perf_counter()
    feats = inference.run(backbone, text_batches(enc, 128, None), len(enc), device)
    extract = time.perf_counter() - extract_began
    frozen = head_epoch(model, text_batches(enc, args.batch_size, 1), backbone, device)
    cached = min(head_epoch(model, feature_batches(feats, enc.labels, args.batch_size, seed),
                            lambda b: b["features"].to(device), device)
                 for seed in range(args.repeats))
    print(f"device {device.type}, {len(enc)} texts, batch {args.batch_size}")
    print(f"{'epoch running the frozen backbone':40} {frozen:9.3f} s")
    print(f"{'epoch on cached features':40} {cached:9.3f} s")
    print(f"{'one-off feature extraction':40} {extract:9.3f} s")
    print(f"speed-up per epoch (frozen / cached): {frozen / cached:.1f}x")


if __name__ == "__main__":
    main()
