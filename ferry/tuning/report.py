"""What the tune run shows: every trial in a CSV (Optuna's ``trials_dataframe``), Optuna's
own matplotlib plots, and the search's figures and winner on the parent run."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ferry import steps
from ferry.config import FerryConfig, redact
from ferry.tuning.study import open_study, storage_url

log = logging.getLogger("ferry.tune")
USER_COLUMNS = ("test_accuracy", "epoch_seconds", "ferry.pruned_by", "ferry.error",
                "mlflow_run_id")
PLOTS = {"optimization_history": "plot_optimization_history",
         "intermediate_values": "plot_intermediate_values",
         "param_importances": "plot_param_importances",
         "parallel_coordinate": "plot_parallel_coordinate"}


def rows(study: optuna.Study, strategy: str) -> list[dict]:
    """One row per trial: its number, state, score, test accuracy, strategy (``strategy``
    when the space does not draw it) and values."""
    out = []
    for t in study.get_trials(deepcopy=False):
        out.append({"trial": t.number, "state": t.state.name.lower(),
                    "strategy": t.params.get("strategy.name", strategy), "value": t.value,
                    "test_accuracy": t.user_attrs.get("test_accuracy"),
                    "epochs": len(t.intermediate_values),
                    "seconds": round(t.duration.total_seconds()) if t.duration else None,
                    "pruned_by": _pruned_by(t) or t.user_attrs.get("ferry.error", "")[:60],
                    "params": ", ".join(f"{k.split('.')[-1]}={_short(v)}"
                                        for k, v in t.params.items() if k != "strategy.name"),
                    "split_key": t.user_attrs.get("split_key")})
    return out


def _pruned_by(trial) -> str:
    if trial.state != TrialState.PRUNED:
        return ""
    return str(trial.user_attrs.get("ferry.pruned_by", "pruner"))


def _short(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write(study: optuna.Study, folder: Path) -> list[Path]:
    """``trials.csv`` and each of Optuna's plots that the study has data for."""
    import matplotlib

    matplotlib.use("Agg")
    import warnings

    import matplotlib.pyplot as plt

    from ferry.files import write_atomic

    folder.mkdir(parents=True, exist_ok=True)
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params",
                                          "datetime_start", "duration", "user_attrs"))
    keep = [c for c in frame.columns if not c.startswith("user_attrs_")
            or c.removeprefix("user_attrs_") in USER_COLUMNS]
    files = [write_atomic(folder / "trials.csv",
                          lambda tmp: frame[keep].to_csv(tmp, index=False))]
    for name, function in PLOTS.items():
        try:
            with warnings.catch_warnings():  # the matplotlib backend is marked experimental
                warnings.simplefilter("ignore")
                axes = getattr(optuna.visualization.matplotlib, function)(study)
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # too few trials
            log.info("tune plot %s skipped: %s", name, exc)
            continue
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.savefig(folder / f"{name}.png", dpi=110, bbox_inches="tight")
        plt.close(figure)
        files.append(folder / f"{name}.png")
    return files


def summarise(cfg: FerryConfig, parent_id: str, split_key: str) -> dict:
    """The trial table, plots and counts on the parent run; the counts and rows back. The
    best is the best complete trial on this data version (``split_key``)."""
    study = open_study(cfg, steps.root())
    table = rows(study, cfg.strategy.name)
    files = write(study, Path(cfg.paths.reports) / "tunes" / parent_id)
    run = steps.run_log(cfg, parent_id)
    run.artifacts(files, "tune")
    counts = {state: sum(1 for r in table if r["state"] == state)
              for state in ("complete", "pruned", "fail", "running", "waiting")}
    by_pruner = sum(1 for r in table if r["pruned_by"] == "pruner")
    metrics = {f"trials_{k}": float(v) for k, v in counts.items()} | {
        "trials_pruned_by_pruner": float(by_pruner), "trials_total": float(len(table))}
    done = [r for r in table if r["state"] == "complete" and r["split_key"] == split_key]
    if done:
        top = max(done, key=lambda r: r["value"])
        metrics |= {f"best_val_{cfg.train.select_on}": top["value"], "best_trial": top["trial"]}
        if top["test_accuracy"] is not None:
            metrics["best_test_accuracy"] = top["test_accuracy"]
    run.metrics(metrics)
    run.tags({"optuna.storage": redact(storage_url(cfg, steps.root())),
              "optuna.sampler": "TPESampler", "optuna.pruner": cfg.tune.pruner})
    return {"rows": table, "counts": counts, "pruned_by_pruner": by_pruner,
            "table": str(files[0])}
