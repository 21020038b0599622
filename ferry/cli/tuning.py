"""``ferry tune``: an Optuna study over ``tune.space``, trials as child runs, the best
registered (see docs/tuning.md)."""

from __future__ import annotations

import importlib
import time
from typing import Annotated

import typer

from ferry.cli import output
from ferry.cli.app import ConfigOpt, SetOpt, app, load
from ferry.cli.training import _link

TrialsOpt = Annotated[int | None, typer.Option(
    "--trials", min=1, help="Trials the study should hold when done (tune.trials); a study "
    "started again counts the trials it finished already.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", min=1, help="Wall-clock budget in seconds for the whole command "
    "(tune.timeout_s): no trial or epoch starts that would end past it.")]
COLUMNS = ("trial", "state", "strategy", "value", "test_accuracy", "epochs", "seconds",
           "pruned_by", "params")  # pruned_by: pruner | time (or the error)


@app.command()
def tune(config: ConfigOpt = None, set_: SetOpt = None, trials: TrialsOpt = None,
         timeout: TimeoutOpt = None) -> None:
    """Search strategies and their knobs (Optuna: TPE + pruning); register the best trial."""
    from ferry.config import redact
    from ferry.steps import root
    from ferry.tuning.search import refuse
    from ferry.tuning.study import storage_url, study_name

    began = time.time()
    extra = [*([f"tune.trials={trials}"] if trials else []),
             *([f"tune.timeout_s={timeout}"] if timeout else [])]
    cfg = load(config, [*(set_ or []), *extra])
    refuse(cfg)  # a space that cannot work fails here, before any flow starts
    where = f"spread over {cfg.tune.deployment}" if cfg.tune.deployment else "here"
    output.line(f"ferry tune: study {study_name(cfg)!r} in "
                f"{redact(storage_url(cfg, root()))}: {cfg.tune.trials} trials, run {where}"
                + (f", within {cfg.tune.timeout_s:.0f} s" if cfg.tune.timeout_s else ""))
    result = importlib.import_module("flows.tune").run(cfg, began)
    output.line(f"done in {time.time() - began:.1f} s; tune run {result['run_id']}",
                "green")
    output.table(result["rows"], COLUMNS)
    counts = result["counts"]
    output.line(f"trials: {counts['complete']} complete, {counts['pruned']} pruned "
                f"({result['pruned_by_pruner']} by the pruner), {counts['fail']} failed; "
                f"table and plots: {result['table']} (and the tune run's artifacts)")
    best = next(r for r in result["rows"] if r["trial"] == result["trial"])
    model = result["model"]
    output.line(f"best: trial {best['trial']} ({best['strategy'] or cfg.strategy.name}) "
                f"val_{cfg.train.select_on} {best['value']:.4f}, test_accuracy "
                f"{best['test_accuracy']:.4f} -> {model['name']} version {model['version']} "
                f"(@{model['alias']})", "green")
    output.line(f"load it: mlflow.pyfunc.load_model('models:/{model['name']}@{model['alias']}')")
    output.line(f"see it:  {_link(cfg, result['run_id'])}")
