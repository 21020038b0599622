"""Hyperparameter search: the Hugging Face Trainer's Optuna search vs ``ferry tune``.

Three arms, one after another, on Ferry's split of the data, with the same trial budget:

* ``trainer``: ``Trainer.hyperparameter_search(backend="optuna")``, validation each epoch.
* ``ferry-same-space``: ``ferry tune`` over the same space, strategy fixed to ``full``.
* ``ferry-full-space``: ``ferry tune`` over its default space (strategies and their knobs).

The shared space: epochs 1-3, batch size {16, 32, 64}, the learning rate. Decision: the Trainer's
one ``learning_rate`` is the backbone's (log-uniform [1e-5, 3e-4]); Ferry draws ``train.lr`` from
[1e-4, 3e-3] with ``backbone_lr_factor`` 0.1: the same backbone rates, Ferry's head 10x faster (its
design). Same sampler and order (TPE seed 0, 4 random start-up trials; median pruner after 2).

Fairness: a trial scores its best epoch in both (the Trainer's objective is ``BestSoFar``, whose
running best its pruner sees too); the Trainer's pruner compares trials at equal global steps, so
it prunes less. Each keeps its own model defaults (Trainer: [CLS] pooler; Ferry: mean pooling,
prototype-initialised head). Ferry runs without its free default-config trial and scratch receipt,
under its own model name, and each arm trains into an empty checkpoint folder (no cached
training). ``wall_s``: Ferry's whole command, the Trainer's ``hyperparameter_search``; the Trainer's
best config is trained again for its test accuracy, outside its times (``--no-retrain``).

    python benchmarks/tuning.py --trials 8                # ~40 min on 2 CPU cores
    python benchmarks/tuning.py --smoke --out /tmp/bench  # tiny BERT, 2 trials (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FERRY = str(Path(sys.executable).with_name("ferry"))
ARMS = ("trainer", "ferry-same-space", "ferry-full-space")
BACKBONE_FACTOR = 0.1
LR_HEAD, EPOCHS, BATCHES = (1e-4, 3e-3), (1, 3), [16, 32, 64]
SAME_SPACE = json.dumps({"train.lr": {"low": LR_HEAD[0], "high": LR_HEAD[1], "log": True},
                         "train.epochs": {"low": EPOCHS[0], "high": EPOCHS[1]},
                         "train.batch_size": {"choices": BATCHES}})  # JSON is YAML
FERRY_COMMON = ["tune.baseline_first=false", "baseline=none",
                "tracking.experiment=ferry-bench-tuning", "tracking.model_name=ferry-bench-tuning"]


@dataclasses.dataclass
class Row:
    arm: str
    trials: int
    best_val: float | None
    test_accuracy: float | None
    pruned: int
    wall_s: float
    search_s: float | None
    note: str = ""



def load_split(overrides: list[str]):
    """The config and Ferry's own split of its data (made here when ``ferry tune`` has not
    made it yet), so the Trainer trains and scores on exactly Ferry's rows."""
    from ferry import steps
    from ferry.config import load_config
    from ferry.data import splits

    cfg = load_config(None, overrides)
    key = steps.split_key(cfg, steps.data_version(cfg))
    folder = steps.root() / cfg.paths.prepared / key
    if not all((folder / f"{n}.csv").is_file() for n in ("train", "validation", "test")):
        checked = steps.check_data(cfg, steps.root() / cfg.paths.reports / key)
        splits.write_splits(checked.parts, folder)
    return cfg, key, {n: splits.read_split(folder, n) for n in ("train", "validation", "test")}



def encode(tokenizer, frame, cfg) -> list[dict]:
    """Token ids per row (truncated at ``model.max_length``; padding is the collator's)."""
    enc = tokenizer(frame[cfg.data.text_column].tolist(), truncation=True,
                    max_length=cfg.model.max_length)
    labels = [cfg.data.labels.index(v) for v in frame[cfg.data.label_column]]
    return [{**{k: enc[k][i] for k in enc}, "labels": labels[i]} for i in range(len(frame))]


def hp_space(trial) -> dict:
    """The shared space in Ferry's draw order (lr, epochs, batch size); lr is the backbone's."""
    low, high = (lr * BACKBONE_FACTOR for lr in LR_HEAD)
    return {"learning_rate": trial.suggest_float("learning_rate", low, high, log=True),
            "num_train_epochs": trial.suggest_int("num_train_epochs", *EPOCHS),
            "per_device_train_batch_size": trial.suggest_categorical(
                "per_device_train_batch_size", BATCHES)}


def accuracy(pred) -> dict:
    return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}


def make_trainer(cfg, model_path: str, data: dict, folder: str, callbacks: list,
                 params: dict | None = None):
    """A Trainer as its docs build one for a search, with Ferry's training settings (seed,
    weight decay, 10% linear warm-up, eval batch) and its fast ones on a GPU."""
    import torch
    from datasets_shim import ListDataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    gpu = torch.cuda.is_available()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = {name: ListDataset(encode(tokenizer, frame, cfg)) for name, frame in data.items()}
    args = TrainingArguments(
        output_dir=folder, eval_strategy="epoch", save_strategy="no", logging_strategy="no",
        report_to="none", disable_tqdm=True, seed=cfg.train.seed, use_cpu=not gpu,
        bf16=gpu, per_device_eval_batch_size=cfg.train.eval_batch_size,
        weight_decay=cfg.train.weight_decay, warmup_steps=cfg.train.warmup_ratio,
        lr_scheduler_type="linear", optim="adamw_torch_fused",
        train_sampling_strategy="group_by_length", remove_unused_columns=False,
        dataloader_num_workers=2 if gpu else 0, dataloader_pin_memory=gpu, **(params or {}))
    evals = rows["validation"] if "test" not in rows else \
        {"validation": rows["validation"], "test": rows["test"]}
    return Trainer(
        model_init=lambda trial=None: AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=len(cfg.data.labels)),
        args=args, train_dataset=rows["train"], eval_dataset=evals,
        data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
        callbacks=callbacks)


def best_so_far():
    """The search's objective: a trial's best validation accuracy so far (reset as each
    trial's training begins), as Ferry's trials report their best epoch."""
    from transformers import TrainerCallback

    class BestSoFar(TrainerCallback):
        def on_train_begin(self, *args, **kwargs) -> None:
            self.best = 0.0

        def __call__(self, metrics: dict) -> float:
            self.best = max(self.best, float(metrics["eval_accuracy"]))
            return self.best

    return BestSoFar()


def run_trainer(cfg, model_path: str, data: dict, trials: int, retrain: bool) -> Row:
    """The Trainer's search (timed), then optionally its best config trained again for the
    test accuracy the search does not return."""
    import optuna
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # "newly initialized weights" once per trial
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage, began = optuna.storages.InMemoryStorage(), time.perf_counter()
    objective = best_so_far()
    with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(io.StringIO()):
        search = {k: data[k] for k in ("train", "validation")}
        trainer = make_trainer(cfg, model_path, search, folder, [objective])
        searched = time.perf_counter()
        best = trainer.hyperparameter_search(
            hp_space=hp_space, compute_objective=objective, n_trials=trials,
            direction="maximize", backend="optuna", study_name="trainer", storage=storage,
            sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=4),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2))
        done = time.perf_counter()
        test = retrain_test(cfg, model_path, data, folder, best.hyperparameters) \
            if retrain else None
    study = optuna.load_study(study_name="trainer", storage=storage)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in best.hyperparameters.items())
    return Row("trainer", len(study.trials), best.objective, test, pruned,
               done - began, done - searched, f"trial {best.run_id}: {params}")


def retrain_test(cfg, model_path: str, data: dict, folder: str, params: dict) -> float:
    """The best config once more, scoring validation and test each epoch; the test accuracy
    of its best validation epoch (what keeping the best checkpoint would give)."""
    trainer = make_trainer(cfg, model_path, data, folder, [], params)
    trainer.train()
    epochs = [h for h in trainer.state.log_history if "eval_test_accuracy" in h or
              "eval_validation_accuracy" in h]
    val = {h["epoch"]: h["eval_validation_accuracy"] for h in epochs
           if "eval_validation_accuracy" in h}
    test = {h["epoch"]: h["eval_test_accuracy"] for h in epochs if "eval_test_accuracy" in h}
    return float(test[max(val, key=lambda e: (val[e], -e))])



def run_ferry(arm: str, overrides: list[str], trials: int, log: Path) -> Row:
    """``ferry tune`` as a user runs it (a timed subprocess); figures from its summary."""
    args = [FERRY, "tune", "--trials", str(trials)]
    for item in overrides:
        args += ["--set", item]
    began = time.perf_counter()
    proc = subprocess.run(args, cwd=Path.cwd(), capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    wall = time.perf_counter() - began
    log.write_text(f"$ {' '.join(args)}\n{proc.stdout}\n{proc.stderr}", encoding="utf-8")
    done = re.search(r"^done in ([\d.]+) s", text := proc.stdout, re.M)
    counts = re.search(r"^trials: (\d+) complete, (\d+) pruned \(\d+ by the pruner\), "
                       r"(\d+) failed", text, re.M)
    best = re.search(r"^best: trial (\d+) \((\w+)\) val_\w+ ([\d.]+), test_accuracy ([\d.]+)",
                     text, re.M)
    if proc.returncode != 0 or not (done and counts and best):
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        return Row(arm, 0, None, None, 0, wall, None, f"failed ({log}): {' | '.join(tail)}")
    complete, pruned, failed = (int(g) for g in counts.groups())
    return Row(arm, complete + pruned + failed, float(best[3]), float(best[4]), pruned, wall,
               float(done[1]), f"trial {best[1]} ({best[2]})")



def cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_table(rows: list[Row]) -> list[str]:
    """The table and, per Ferry arm, its wall-time ratio and best-val difference to the
    Trainer; the lines come back for the saved copy."""
    lines = [f"{'arm':<18}{'trials':>7}{'best_val':>10}{'test_acc':>10}{'pruned':>8}"
             f"{'wall_s':>9}{'search_s':>10}  best"]
    for r in rows:
        lines.append(f"{r.arm:<18}{r.trials:>7}{cell(r.best_val, '.4f'):>10}"
                     f"{cell(r.test_accuracy, '.4f'):>10}{r.pruned:>8}{r.wall_s:>9.1f}"
                     f"{cell(r.search_s, '.1f'):>10}  {r.note}")
    base = next((r for r in rows if r.arm == ARMS[0]), None)
    for r in rows:
        if base is None or r is base or r.best_val is None or base.best_val is None:
            continue
        search = f" (search {r.search_s / base.search_s:.2f}x)" if r.search_s and \
            base.search_s else ""
        lines.append(f"ratio {r.arm}/trainer wall time {r.wall_s / base.wall_s:.2f}x{search}")
        lines.append(f"best-val diff {r.arm} - trainer {r.best_val - base.best_val:+.4f}")
    print("\n".join(lines), flush=True)
    return lines


def write_results(rows: list[Row], lines: list[str], meta: dict, out: Path) -> list[Path]:
    """``tuning-<time>.json`` (rows, the printed table, the settings) and ``.csv`` (rows)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"tuning-{meta['started']}"
    records = [dataclasses.asdict(r) for r in rows]
    stem.with_suffix(".json").write_text(json.dumps(
        {**meta, "rows": records, "table": lines}, indent=2), encoding="utf-8")
    with stem.with_suffix(".csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    return [stem.with_suffix(".json"), stem.with_suffix(".csv")]


def smoke_project() -> tuple[Path, list[str]]:
    """A temporary project as the tests build one: a tiny random BERT and 120 synthetic,
    learnable reviews (tests/conftest.py), so the three arms run in seconds on a CPU. The BERT
    has MiniLM's 6 layers: the default space draws ``freeze_bottom.frozen_layers`` up to 5."""
    sys.path.insert(0, str(ROOT))
    from tests.conftest import make_tiny_bert, review_rows, tiny_overrides, write_csv

    folder = Path(tempfile.mkdtemp(prefix="ferry-bench-tuning-"))
    model = make_tiny_bert(folder / "tiny-bert", layers=6)
    data = write_csv(folder / "data" / "reviews.csv", review_rows(120))
    return folder, tiny_overrides(model, data.relative_to(folder))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=None, help="per arm (default 12; smoke 2)")
    parser.add_argument("--smoke", action="store_true", help="tiny BERT, 120 rows, 2 trials")
    parser.add_argument("--arms", type=lambda s: s.split(","), default=list(ARMS),
                        help=f"comma-separated, of {','.join(ARMS)} (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="extra config override for every arm")
    parser.add_argument("--no-retrain", action="store_true",
                        help="skip training the Trainer's best config again for its test accuracy")
    return parser.parse_args()


def _runners(args, cfg, source_path: str, data: dict, base: list[str], trials: int,
             out: Path, started: str) -> dict:
    """Each arm as a call; every Ferry arm trains into its own empty checkpoint folder, so
    no arm reuses a training an earlier run left in the cache."""
    ferry = [*base, *FERRY_COMMON]

    def fresh(arm: str) -> str:
        return f"paths.checkpoints=.ferry/bench-checkpoints/{started}-{arm}"

    return {
        ARMS[0]: lambda: run_trainer(cfg, source_path, data, trials, not args.no_retrain),
        ARMS[1]: lambda: run_ferry(ARMS[1], [
            *ferry, "strategy.name=full", f"strategy.backbone_lr_factor={BACKBONE_FACTOR}",
            f"tune.space={SAME_SPACE}", f"tune.study=bench-{started}-same", fresh("same")],
            trials, out / f"tuning-{started}-same-space.log"),
        ARMS[2]: lambda: run_ferry(ARMS[2], [
            *ferry, f"tune.study=bench-{started}-full", fresh("full")], trials,
            out / f"tuning-{started}-full-space.log")}


def main() -> None:
    args = _parse()
    from ferry.env import apply_offline_defaults

    apply_offline_defaults()
    sys.path.insert(0, str(ROOT / "benchmarks"))  # datasets_shim
    trials = args.trials or (2 if args.smoke else 12)
    out, started = args.out.resolve(), time.strftime("%Y%m%d-%H%M%S")
    base = list(args.overrides)
    if args.smoke:
        project, tiny = smoke_project()
        os.chdir(project)
        base = [*tiny, *base]
    else:
        os.chdir(ROOT)
    cfg, key, data = load_split(base)
    from ferry.models.sources import resolve

    source = resolve(cfg.model)
    print(f"split {key}: train {len(data['train'])} / validation {len(data['validation'])} / "
          f"test {len(data['test'])}; {trials} trials per arm; model {source.name}; "
          f"backbone lr = train.lr x {BACKBONE_FACTOR}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    runners = _runners(args, cfg, source.path, data, base, trials, out, started)
    rows = [runners[name]() for name in args.arms]
    shutil.rmtree(Path(".ferry") / "bench-checkpoints", ignore_errors=True)
    if args.smoke:  # the temporary project (the ferry logs are under --out)
        os.chdir(ROOT)
        shutil.rmtree(project, ignore_errors=True)
    meta = {"started": started, "trials": trials, "smoke": args.smoke, "split_key": key,
            "overrides": base, "ferry_overrides": FERRY_COMMON, "same_space": SAME_SPACE,
            "backbone_lr_factor": BACKBONE_FACTOR}
    for path in write_results(rows, print_table(rows), meta, out):
        print(f"wrote {path}")
    if any(r.best_val is None for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
