"""Commands that run flows: run, sweep, curve, promote, rollback."""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Annotated

import typer

from ferry.cli import output
from ferry.cli.app import ConfigOpt, SetOpt, app, load

NprocOpt = Annotated[int | None, typer.Option("--nproc", min=1, help="Fine-tune with N "
                     "processes under torchrun (DDP; one per GPU), i.e. distributed.nproc.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Registered model name "
                     "(default: tracking.model_name).")]
RESULT_KEYS = ("test_accuracy", "test_macro_f1", "best_val_accuracy", "scratch_test_accuracy")


@app.command()
def run(config: ConfigOpt = None, set_: SetOpt = None, nproc: NprocOpt = None) -> None:
    """Run the transfer flow: validate, retrieve, fine-tune, evaluate, track and register."""
    cfg = load(config, [*(set_ or []), *([f"distributed.nproc={nproc}"] if nproc else [])])
    output.line(f"ferry run: {cfg.strategy.name} transfer of {cfg.model.path or cfg.model.name}"
                f" to {cfg.data.path} ({_source(config, set_)})")
    began = time.perf_counter()
    result = importlib.import_module("flows.transfer").transfer(cfg)
    m, model = result["metrics"], result["model"]
    output.line(f"done in {time.perf_counter() - began:.1f} s; MLflow run {result['run_id']}",
                "green")
    output.line("  " + "   ".join(f"{k} {v:.4f}" for k, v in _results(m, cfg.train.select_on)))
    if "transfer_gain_ci_low" in m:
        output.line(f"  receipt: transfer gain {m['transfer_gain']:+.4f}, 95% CI "
                    f"[{m['transfer_gain_ci_low']:+.4f}, {m['transfer_gain_ci_high']:+.4f}] "
                    "over the same model trained from scratch")
    tasks = [t.column for t in cfg.data.tasks or []]
    for task in tasks if len(tasks) > 1 else []:  # several tasks: each one's own gain
        key = f"transfer_gain_{task}"
        if f"{key}_ci_low" in m:
            output.line(f"    {task}: {m[key]:+.4f} [{m[key + '_ci_low']:+.4f}, "
                        f"{m[key + '_ci_high']:+.4f}]")
    output.line(f"load it: mlflow.pyfunc.load_model('models:/{model['name']}@{model['alias']}')"
                f" (version {model['version']})", "green")
    output.line(f"see it:  {_link(cfg, result['run_id'])}")


@app.command()
def promote(config: ConfigOpt = None, set_: SetOpt = None, model: ModelOpt = None,
            version: Annotated[int | None, typer.Option(min=1, help="Promote this version "
                               "instead of @challenger.")] = None) -> None:
    """Promote @challenger to @champion if it beats the champion on the same holdout."""
    extra = [f"promotion.challenger_version={version}"] if version else []
    cfg = _with_model(load(config, [*(set_ or []), *extra]), model)
    result = importlib.import_module("flows.promote").promote(cfg)
    verb = "PROMOTED" if result["promote"] else "kept"
    output.line(f"{result['model']}: v{result['challenger']} vs champion "
                f"v{result['champion_before'] or '-'}: {verb}; @"
                f"{cfg.promotion.champion_alias} -> v{result['champion'] or '-'}",
                "green" if result["promote"] else "yellow")
    output.line(f"reason: {result['reason']}")
    width = max((len(k) for k in result["scores"]), default=0) + 2  # task/label keys are long
    for key, value in sorted(result["scores"].items()):
        output.line(f"  {key:{width}}{value:.4f}")
    output.line(f"decision run: {result['run_id']}")


@app.command()
def rollback(config: ConfigOpt = None, set_: SetOpt = None, model: ModelOpt = None) -> None:
    """Move @champion back to the previous champion."""
    cfg = _with_model(load(config, set_), model)
    result = importlib.import_module("flows.promote").rollback(cfg)
    output.line(f"{result['model']}: @{cfg.promotion.champion_alias} v{result['from']} -> "
                f"v{result['champion']} (run {result['run_id']})", "green")


def _results(m: dict[str, float], select_on: str) -> list[tuple[str, float]]:
    """The run's headline figures. The best epoch's validation figure is the one training
    monitored, ``val_<train.select_on>``: it is named so here even when it was logged as
    ``best_val_accuracy`` (a macro-F1 must not read as an accuracy)."""
    out = []
    for key in RESULT_KEYS:
        if key == "best_val_accuracy":
            value = m.get(f"best_val_{select_on}", m.get(key))
            key = f"best_val_{select_on}"
        else:
            value = m.get(key)
        if value is not None:
            out.append((key, value))
    return out


def _link(cfg, run_id: str) -> str:
    """The run's page in the MLflow UI (and how to start the UI for the local store)."""
    from ferry.tracking import Tracker

    tracker = Tracker(cfg)
    link = tracker.link(run_id)
    if tracker.uri.startswith("sqlite:"):
        store = tracker.uri.replace(str(Path.cwd()) + "/", "")
        link += f"  (after: mlflow ui --backend-store-uri {store})"
    return link


def _source(config, overrides) -> str:
    """Where the run's settings came from, as the user gave them."""
    from ferry.config import DEFAULT_CONFIG

    base = str(config) if config else (str(DEFAULT_CONFIG) if DEFAULT_CONFIG.is_file()
                                       else "built-in defaults")
    return base + (" + --set" if overrides else "")


def _with_model(cfg, model: str | None):
    if not model:
        return cfg
    return cfg.model_copy(update={"tracking": cfg.tracking.model_copy(
        update={"model_name": model})})


@app.command()
def sweep(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Compare strategies (sweep.strategies) on one data version; register the best."""
    from ferry import experiments, steps

    cfg = load(config, set_)
    workers = experiments.workers(cfg, steps.retrieve_pretrained(cfg))
    output.line(f"Sweeping {', '.join(experiments.sweep_strategies(cfg))} "
                f"({workers} at a time)")
    began = time.perf_counter()
    result = importlib.import_module("flows.sweep").run(cfg, workers)
    output.line(f"Flow time: {time.perf_counter() - began:.1f} s")
    select = result.get("select_on", cfg.train.select_on)
    output.table(result["rows"], ("strategy", f"val_{select}", "test_accuracy", "test_macro_f1",
                                  "train_minutes", "trainable_params", "transfer_gain"))
    output.line(f"Parent run {result['run_id']}: comparison.csv/.png; best by validation "
                f"{select}: "
                f"{result['best']} -> {result['model']['name']} version "
                f"{result['model']['version']} (@{result['model']['alias']})", "green")


@app.command()
def curve(config: ConfigOpt = None, set_: SetOpt = None) -> None:
    """Learning curve: pretrained vs scratch at k labelled examples per class."""
    from ferry import experiments, steps

    cfg = load(config, set_)
    workers = experiments.workers(cfg, steps.retrieve_pretrained(cfg))
    began = time.perf_counter()
    result = importlib.import_module("flows.curve").run(cfg, workers)
    output.line(f"Flow time: {time.perf_counter() - began:.1f} s")
    output.table(result["rows"], ("k", "n_train", "seeds", "pretrained_accuracy",
                                  "pretrained_std", "scratch_accuracy", "scratch_std", "gain"))
    output.line(f"Curve run {result['run_id']}: curve.csv, curve_points.csv, curve.png",
                "green")
