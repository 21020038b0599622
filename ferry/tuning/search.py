"""The search around the trials: its MLflow parent run, the deadline, running trials here or
one per worker, and the winner's registration.

The parent run's id is kept on the study, so a ``ferry tune`` started again (after Ctrl-C or
SIGKILL) reopens the same parent and every trial of the study stays one of its children.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from ferry import steps
from ferry.config import FerryConfig
from ferry.data.versioning import DataVersion
from ferry.errors import FerryError
from ferry.tuning import space
from ferry.tuning.study import finished, open_study, recover
from ferry.tuning.trial import STATE_TAG, Context, objective

log = logging.getLogger("ferry.tune")
PARENT = "mlflow_parent_run_id"  # study user attr
REGISTERED = "registered"  # study user attr: the trial registered last, and its version
RESERVE_S = 30.0  # kept back from --timeout for the report and the registration


def parent_run(cfg: FerryConfig) -> str:
    """The study's parent run, reopened when it is still in the store, else a new one.
    Trials a killed ``ferry tune`` left running are failed (queued once more) first, and
    their child runs closed as FAILED."""
    study = open_study(cfg, steps.root())
    for trial in recover(study):
        log.info("trial %d was left running by a process that is gone: failed, and queued "
                 "again once", trial.number)
        if run_id := trial.user_attrs.get("mlflow_run_id"):
            run = steps.run_log(cfg, run_id)
            run.tags({STATE_TAG: "failed"})
            run.end(False)
    known = study.user_attrs.get(PARENT)
    if known and _reopen(cfg, known):
        log.info("MLflow run %s (the study's tune run, continued; %d of its trials count)",
                 known, finished(study))
        return known
    run_id = steps.start_run(cfg, "tune")
    study.set_user_attr(PARENT, run_id)
    steps.run_log(cfg, run_id).tags({"optuna.study": study.study_name})
    return run_id


def _reopen(cfg: FerryConfig, run_id: str) -> bool:
    from ferry.tracking import Tracker

    mc = Tracker(cfg, steps.root()).mc
    try:
        run = mc.get_run(run_id)
    except Exception:  # deleted, or another store: start a new parent
        return False
    if run.info.lifecycle_stage != "active":
        return False
    mc.update_run(run_id, status="RUNNING")
    return True


def deadline(cfg: FerryConfig, began: float) -> float | None:
    """When trials must be done by: ``tune.timeout_s`` after the command began, less what
    the report and the registration need."""
    if cfg.tune.timeout_s is None:
        return None
    return began + cfg.tune.timeout_s - min(RESERVE_S, cfg.tune.timeout_s / 10)


def prepare(cfg: FerryConfig, ctx: Context) -> int:
    """Queue this config's own settings as trial 0 of a new study (``baseline_first``), and
    compute the frozen features a drawn probe needs once, before any trial; the number of
    trials still to run comes back."""
    from ferry.transfer.strategies import REGISTRY
    from ferry.transfer.training import budgeted

    study = open_study(cfg, steps.root())
    if cfg.tune.baseline_first and not study.get_trials(deepcopy=False):
        resolved, _ = budgeted(cfg, ctx.prepared.rows["train"])
        if (own := space.baseline(resolved)) is not None:
            study.enqueue_trial(own, user_attrs={"ferry.baseline": True})
        else:
            log.info("tune.baseline_first: the config's own settings are outside tune.space "
                     "(a choices list leaves them out); the search starts from its draws")
    for name in space.strategies(cfg):
        if REGISTRY[name].cached_features:
            steps.extract_features(cfg.with_strategy(name), ctx.source, ctx.prepared)
            break
    return max(0, cfg.tune.trials - finished(study))


def optimize(cfg: FerryConfig, ctx: Context, n_trials: int) -> None:
    """Run ``n_trials`` trials here, one after another (Optuna's ``optimize``: queued
    trials first, then TPE), stopping at the deadline. A failing trial is recorded as
    failed and the search goes on."""
    if n_trials <= 0:
        return
    study = open_study(cfg, steps.root())
    timeout = None if ctx.deadline is None else max(1.0, ctx.deadline - time.time())
    study.optimize(objective(cfg, ctx), n_trials=n_trials, timeout=timeout,
                   catch=(Exception,), gc_after_trial=True)


def member(cfg: FerryConfig, ctx: Context) -> str:
    """One trial on a worker (a flow run of ``tune.deployment``), unless the study has all
    its trials finished or running already, or the deadline passed: what it did, in words."""
    study = open_study(cfg, steps.root())
    if not wanted(cfg, study, ctx.deadline):
        return "nothing to do: the study has its trials"
    # workers opening the study at the same moment would share a seed and draw the same
    # random point: Optuna reseeds each one as it does for its own parallel jobs
    study.sampler.reseed_rng()
    ran: list[FrozenTrial] = []
    study.optimize(objective(cfg, ctx), n_trials=1, catch=(Exception,),
                   callbacks=[lambda _, trial: ran.append(trial)])
    return f"trial {ran[0].number}: {ran[0].state.name.lower()}" if ran else "no trial"


def wanted(cfg: FerryConfig, study: optuna.Study, deadline: float | None) -> bool:
    """Whether another trial should start: time is left, and the finished, running and
    queued trials are fewer than ``tune.trials``."""
    if deadline is not None and time.time() >= deadline:
        return False
    busy = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                        TrialState.WAITING)))
    return finished(study) + busy < cfg.tune.trials


def best_trial(cfg: FerryConfig, split_key: str) -> FrozenTrial:
    """The complete trial with the best validation score on this data version (a study
    continued after the data changed keeps its older trials, which cannot win)."""
    study = open_study(cfg, steps.root())
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.user_attrs.get("split_key") == split_key and "trained" in t.user_attrs
            and Path(t.user_attrs["trained"]["model_dir"]).is_dir()]
    if not done:
        raise FerryError(f"study {study.study_name}: no trial completed on this data version "
                         "(all were pruned or failed: see the tune run's child runs); raise "
                         "--trials or --timeout")
    return max(done, key=lambda t: (t.value, -t.number))


def register_best(cfg: FerryConfig, ctx: Context, version: DataVersion) -> dict:
    """Register the best trial's model from its own child run, with its receipts; a study
    run again whose best trial is already registered (under this model name) keeps that
    version instead of registering a copy."""
    best = best_trial(cfg, ctx.prepared.split_key)
    study = open_study(cfg, steps.root())
    done = study.user_attrs.get(REGISTERED, {})
    if done.get("trial") == best.number and done.get("name") == cfg.tracking.model_name:
        registered = steps.Registered(name=done["name"], version=done["version"],
                                      alias=done["alias"])
        log.info("trial %d is registered already: %s version %s", best.number,
                 registered.name, registered.version)
    else:
        child = space.with_values(cfg, best.params)
        trained = steps.Trained.model_validate(best.user_attrs["trained"])
        registered = steps.register(child, trained, best.user_attrs["mlflow_run_id"],
                                    version, ctx.source, best.user_attrs["metrics"],
                                    ctx.prepared.rows, ctx.prepared.split_dir)
        study.set_user_attr(REGISTERED, {"trial": best.number, **registered.model_dump()})
    steps.run_log(cfg, ctx.parent_id).tags({"ferry.registered_version": registered.version})
    return {"trial": best.number, "best_run_id": best.user_attrs["mlflow_run_id"],
            "model": registered.model_dump()}
