"""Single-task vs multi-task on the 2016 debates, same split: the README's table.

Runs the real transfer flow three times on ``configs/debates.yaml`` (party alone, speaker
alone, party + speaker on one backbone), each registered under its own model name, and prints
test accuracy and macro-F1 per task beside the classical baseline (TF-IDF + logistic
regression) of the same split: the rows the multi-task run kept, split as it split them
(stratified on ``speaker``, ``data.split.stratify``).

    python benchmarks/multitask.py [--set train.epochs=6 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from ferry.config import load_config

RUNS = {
    "party + speaker": [],
    "party": ["data.tasks=[{column: party}]"],
    "speaker": ["data.tasks=[{column: speaker}]"],
}


def same_rows(config: str, extra: list[str]) -> list[str]:
    """Overrides that give a single-task run exactly the multi-task run's rows and split.

    Alone, party's repairs differ (a text said by two speakers of one party is a duplicate
    for party, a conflict for party + speaker): the kept rows are written with their split
    to ``.ferry/bench/debates-split.csv`` and read through ``data.split_column``."""
    from ferry.data import checks
    from ferry.data.loading import ROW, read_labelled

    cfg = load_config(config, extra)
    frame = read_labelled(cfg.data.path, cfg.data)
    out = Path(".ferry/bench")
    checked = checks.check(frame, cfg.data, out / "report")
    kept = pd.concat([part.assign(split=name) for name, part in checked.parts.items()])
    kept = kept.sort_values(ROW).drop(columns=[ROW])
    path = out / "debates-split.csv"
    kept.to_csv(path, index=False)
    return [f"data.path={path}", "data.recipe=null", "data.dvc_file=none.dvc",
            "data.split_column=split"]


def run(name: str, extra: list[str], config: str) -> tuple[dict, float]:
    """One flow run; the multi-task one as ``ferry run -c configs/debates.yaml`` (with its
    scratch receipt), the single-task ones without a scratch baseline (not in the table)."""
    from flows.transfer import transfer

    more = [] if not RUNS[name] else [*same_rows(config, extra), "baseline=none",
                                      f"tracking.model_name=bench-debates-{name}"]
    cfg = load_config(config, [*RUNS[name], *extra, *more])
    began = time.perf_counter()
    result = transfer(cfg)
    return result["metrics"], time.perf_counter() - began


def rows(name: str, metrics: dict) -> list[str]:
    tasks = ["party", "speaker"] if "+" in name else [name]
    out = []
    for task in tasks:
        infix = f"{task}_" if len(tasks) > 1 else ""
        get = lambda key: metrics.get(key, float("nan"))  # noqa: E731
        out.append(f"| {name} | {task} | {get(f'test_{infix}accuracy'):.3f} | "
                   f"{get(f'test_{infix}macro_f1'):.3f} | "
                   f"{get(f'classical_{infix}test_accuracy'):.3f} | "
                   f"{get(f'classical_{infix}test_macro_f1'):.3f} |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/debates.yaml")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    from ferry.env import apply_offline_defaults

    apply_offline_defaults()
    lines = ["| model | task | test accuracy | test macro-F1 | classical accuracy | "
             "classical macro-F1 |", "|---|---|---|---|---|---|"]
    for name in RUNS:
        metrics, seconds = run(name, args.overrides, args.config)
        lines += rows(name, metrics)
        print(f"{name}: {seconds:.0f} s", flush=True)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
