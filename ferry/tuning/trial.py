"""One trial: the drawn config trained, scored and receipted exactly as ``ferry run`` would,
as a child MLflow run of the tune run, with each epoch reported to the study's pruner.

A trial never recomputes what does not depend on its draw: the scratch baseline is the one
cached for the data version (trained once, before the search), and a probe's frozen
features come from the feature cache. A trial that cannot finish before the deadline is
pruned (before it starts, or at the end of an epoch), never left half-done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import optuna
from pydantic import BaseModel

from ferry import steps
from ferry.config import FerryConfig
from ferry.errors import FerryError
from ferry.models.sources import PretrainedSource
from ferry.tuning import space
from ferry.tuning.study import OWNER, owner

log = logging.getLogger("ferry.tune")
STATE_TAG = "optuna.trial.state"  # complete | pruned | failed, on the trial's child run
PRUNED_BY = "ferry.pruned_by"  # trial user attr: pruner | time
OUT_OF_TIME = "ferry.out_of_time"  # study user attr: the deadline a trial found too close


class Context(BaseModel):
    """What every trial of one search shares (JSON: it crosses the Prefect API to workers)."""

    parent_id: str
    source: PretrainedSource
    prepared: steps.Prepared
    scratch: steps.Trained | None
    deadline: float | None  # epoch seconds; None: no time budget


def objective(cfg: FerryConfig, ctx: Context) -> Callable[[optuna.Trial], float]:
    """The function Optuna's ``optimize`` calls: one trial, its best validation score."""
    def run(trial: optuna.Trial) -> float:
        trial.set_user_attr(OWNER, owner())
        trial.set_user_attr("split_key", ctx.prepared.split_key)
        trial.set_user_attr("mlflow_run_id", "")  # a retry's copy names the failed run
        try:
            values = space.suggest(trial, cfg)
            child = space.with_values(cfg, values)
        except (ValueError, FerryError) as exc:  # a draw the config refuses
            trial.set_user_attr("ferry.error", str(exc)[:500])
            log.warning("trial %d: %s", trial.number, exc)
            raise
        _fits_or_prune(trial, child, ctx)
        return _train(trial, child, values, ctx)
    return run


def _train(trial: optuna.Trial, child: FerryConfig, values: dict, ctx: Context) -> float:
    """The trial's child run: FINISHED when complete or pruned (tagged which), FAILED when
    training fails; a pruned trial re-raises ``TrialPruned`` once its run is closed."""
    pruned: optuna.TrialPruned | None = None
    with steps.lifecycle(lambda: steps.start_run(child, "trial", ctx.parent_id,
                                                 f"trial-{trial.number}-{child.strategy.name}"),
                         lambda run_id, ok: steps.finish_run(child, run_id, ok)) as run_id:
        run = steps.run_log(child, run_id)
        trial.set_user_attr("mlflow_run_id", run_id)
        run.tags({"optuna.study": trial.study.study_name, "optuna.trial": trial.number,
                  **{f"tune.{k}": v for k, v in values.items()}})
        try:
            features = steps.extract_features(child, ctx.source, ctx.prepared)
            trained = steps.fine_tune(child, ctx.source, ctx.prepared, features, run_id,
                                      on_epoch=_pruning(trial, child, ctx))
        except optuna.TrialPruned as exc:
            pruned = exc
            trial.set_user_attr(PRUNED_BY, str(exc).split(":")[0])
            run.tags({STATE_TAG: "pruned", "ferry.pruned_by": str(exc)})
        except Exception as exc:
            run.tags({STATE_TAG: "failed"})
            trial.set_user_attr("ferry.error", f"{type(exc).__name__}: {exc}"[:500])
            log.warning("trial %d %s failed: %s", trial.number, child.strategy.name, exc)
            raise
        else:
            _score(trial, child, trained, ctx, run_id)
            run.tags({STATE_TAG: "complete"})
    if pruned is not None:
        log.info("trial %d %s: %s", trial.number, child.strategy.name, pruned)
        raise pruned
    log.info("trial %d %s: best val_%s %.4f (test_accuracy %.4f)", trial.number,
             child.strategy.name, child.train.select_on, trained.best_val_accuracy,
             trial.user_attrs["test_accuracy"])
    return trained.best_val_accuracy


def _score(trial: optuna.Trial, child: FerryConfig, trained: steps.Trained, ctx: Context,
           run_id: str) -> None:
    """Test metrics and the receipt against the cached scratch model, on the child run;
    what registration needs is kept on the trial (``trained``, its metrics)."""
    metrics = steps.evaluate(child, trained, ctx.prepared, run_id)
    if ctx.scratch is not None and child.strategy.name != "scratch":
        metrics |= steps.transfer_gain(child, run_id, trained, ctx.scratch)
    steps.log_metrics(child, run_id, metrics)
    trial.set_user_attr("trained", trained.model_dump(mode="json"))
    trial.set_user_attr("metrics", {k: float(v) for k, v in metrics.items()})
    trial.set_user_attr("test_accuracy", float(metrics["test_accuracy"]))


def _pruning(trial: optuna.Trial, child: FerryConfig,
             ctx: Context) -> Callable[[int, dict], None]:
    """Each epoch's validation score to the pruner (the epoch is the step); before the last
    planned epoch, raises ``TrialPruned`` when the pruner says so, or when another epoch, as
    long as this trial's mean one, would end past the deadline."""
    monitor = f"val_{child.train.select_on}"
    planned, deadline = _planned_epochs(child, ctx.prepared.rows["train"]), ctx.deadline
    began, trained = time.time(), []

    def on_epoch(epoch: int, record: dict) -> None:
        value = float(record[monitor])
        trial.report(value, epoch)
        trained.append(float(record.get("epoch_seconds", 0.0)))
        # wall time per epoch (validation included); a resumed trial replays its first
        # epochs at once, so the loop's own epoch times are the floor
        per_epoch = max((time.time() - began) / max(epoch, 1), sum(trained) / len(trained))
        trial.set_user_attr("epoch_seconds", per_epoch)
        if epoch >= planned:  # trained to the end: nothing left to save by stopping it
            return
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruner: {monitor} {value:.4f} after epoch {epoch}")
        if deadline is not None and time.time() + per_epoch > deadline:
            raise optuna.TrialPruned(f"time: epoch {epoch + 1} would end past the deadline")
    return on_epoch


def _planned_epochs(child: FerryConfig, n_train: int) -> int:
    """The epochs the trial's strategy trains for (a probe has its own)."""
    from ferry.transfer import training

    resolved, _ = training.budgeted(child, n_train)
    return int(training.policy_for(resolved, "transfer").budget(resolved.train).epochs)


def _fits_or_prune(trial: optuna.Trial, child: FerryConfig, ctx: Context) -> None:
    """Prune (and end the search) when one epoch of this trial, as long as the slowest
    epoch seen for its strategy (or the scratch baseline's: the whole backbone trains), would
    end past the deadline."""
    from ferry.transfer.strategies import REGISTRY

    if ctx.deadline is None:
        return
    strategy = child.strategy.name
    seen = [float(t.user_attrs["epoch_seconds"]) for t in trial.study.get_trials(deepcopy=False)
            if t.params.get(space.STRATEGY_KEY, strategy) == strategy
            and "epoch_seconds" in t.user_attrs]
    if not seen and ctx.scratch is not None and not REGISTRY[strategy].cached_features:
        epochs = max(1, ctx.scratch.best_epoch)
        seen = [ctx.scratch.train_seconds / epochs]
    need = max(seen, default=0.0)
    if time.time() + need > ctx.deadline:
        trial.set_user_attr(PRUNED_BY, "time")
        trial.study.set_user_attr(OUT_OF_TIME, ctx.deadline)  # spread: no more launches
        trial.study.enqueue_trial(trial.params, skip_if_exists=True)  # a later run tries it
        trial.study.stop()
        raise optuna.TrialPruned(f"time: an epoch of {strategy} (~{need:.0f} s) would end "
                                 "past the deadline; the search stops here")
