"""``ferry predict``: score a batch file with a registered model, test it for drift, log a
scoring run (and, with ``monitor.on_drift: retrain``, start the retrain deployment).

It runs ``flows/score.py``, the flow the ``nightly-score`` deployment runs, so a batch scored
by hand and one scored on schedule go through the same steps (see docs/scoring.md).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer

from ferry.cli import output
from ferry.cli.app import ConfigOpt, SetOpt, app, load
from ferry.cli.training import _link

InputArg = Annotated[Path, typer.Argument(
    metavar="INPUT", help="The batch to score: CSV, TSV, Parquet or JSONL with the config's "
    "data.text_column (images: a manifest with data.path_column, or a folder).")]
PredictModelOpt = Annotated[str | None, typer.Option(
    "--model", help="NAME@ALIAS or NAME/VERSION (@ALIAS or VERSION: of tracking.model_name). "
    "Default: tracking.model_name@promotion.champion_alias.")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="The Parquet file to write (default: monitor.out_dir/<input "
    "stem>.scored.parquet, i.e. scored/).")]


@app.command()
def predict(input_path: InputArg, config: ConfigOpt = None, set_: SetOpt = None,
            model: PredictModelOpt = None, out: OutOpt = None) -> None:
    """Score a batch with the champion (or --model): a Parquet file of predictions and
    calibrated probabilities, a drift test against the model's training data, an MLflow
    scoring run."""
    from ferry.serving.batch import out_path, resolve

    cfg = load(config, set_)  # a bad key fails here, before the flow starts
    name, which = resolve(cfg, model)
    target = out_path(cfg, input_path, out)
    sep = "/" if which.isdigit() else "@"
    output.line(f"ferry predict: {input_path} with {name}{sep}{which} -> {target}")
    result = importlib.import_module("flows.score").score(
        input=str(input_path), config=str(config) if config else None,
        overrides=list(set_ or []), model=model, out=str(out) if out else None)
    shares = ", ".join(f"{k} {v:.3f}" for k, v in result["predicted"].items())
    output.line(f"predicted: {shares} (mean confidence {result['mean_confidence']:.3f}); "
                f"{result['rows_scored']:,} of {result['rows_in']:,} rows scored")
    if result["drifted"] and result.get("retrain") is None:
        output.line("retrain: not started (monitor.on_drift is none; set it to retrain to "
                    f"start {cfg.monitor.retrain_deployment})", "yellow")
    output.line(f"see it:  {_link(cfg, result['run_id'])}")
