"""The classical baseline alone, on split files: the figures of docs/baselines.md in seconds.

Text: a folder of ``train/validation/test.csv`` split files as the flow writes them
(``prepared/<split key>/``, after ``ferry data build`` + a run or ``ferry validate``). Images: a
manifest CSV with ``path,label,split`` (paths relative to it), e.g. the built-in Fashion-MNIST
subset. Prints the tuned model, validation and test accuracy, macro-F1 and the fit time.

    python benchmarks/classical.py --text prepared/<split key>
    python benchmarks/classical.py --images data/fashion-mnist/manifest.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from ferry.data.images import load_pixels
from ferry.data.splits import read_split
from ferry.evaluation.classical import IMAGE_SIZE, ClassicalResult, image_baseline, text_baseline

SPLITS = ("train", "validation", "test")


def text(split_dir: Path, text_column: str, label_column: str) -> ClassicalResult:
    frames = {name: read_split(split_dir, name) for name in SPLITS}
    labels = sorted(set(frames["train"][label_column]))
    return text_baseline({k: f[text_column].tolist() for k, f in frames.items()},
                         {k: [labels.index(v) for v in f[label_column]]
                          for k, f in frames.items()})


def images(manifest: Path) -> ClassicalResult:
    frame = pd.read_csv(manifest)
    labels = sorted(set(frame["label"]))
    parts = {name: frame[frame["split"] == name] for name in SPLITS}
    pixels = {k: load_pixels([str(manifest.parent / p) for p in f["path"]], IMAGE_SIZE)
              for k, f in parts.items()}
    return image_baseline(pixels, {k: [labels.index(v) for v in f["label"]]
                                   for k, f in parts.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, help="a folder of train/validation/test.csv")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--images", type=Path, help="a manifest CSV with path,label,split")
    args = parser.parse_args()
    for what, run in (("text", lambda: text(args.text, args.text_column, args.label_column)),
                      ("images", lambda: images(args.images))):
        if getattr(args, what) is None:
            continue
        began = time.perf_counter()
        result = run()
        print(f"{what}: {result.describe()}: validation {result.val_accuracy:.4f}, test "
              f"accuracy {result.test_accuracy:.4f}, macro-F1 {result.test_macro_f1:.4f}; "
              f"fit {result.seconds:.1f} s, {time.perf_counter() - began:.1f} s with reading")


if __name__ == "__main__":
    main()
