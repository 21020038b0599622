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
from ferry.models.sources import PretrainedSource
from ferry.tuning import space
from ferry.tuning.study import fail_stale, finished, open_study, recover
from ferry.tuning.trial import OUT_OF_TIME, STATE_TAG, Context, objective

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
    close_failed_runs(cfg, study)
    known = study.user_attrs.get(PARENT)
    if known and _reopen(cfg, known):
        log.info("MLflow run %s (the study's tune run, continued; %d of its trials count)",
                 known, finished(study))
        return known
    run_id = steps.start_run(cfg, "tune")
    study.set_user_attr(PARENT, run_id)
    steps.run_log(cfg, run_id).tags({"optuna.study": study.study_name})
    return run_id


def close_failed_runs(cfg: FerryConfig, study: optuna.Study) -> None:
    """Close as FAILED the child runs of failed trials still open in MLflow (a process
    killed mid-trial, here or on a worker, never closed its run)."""
    from ferry.tracking import Tracker

    tracker = Tracker(cfg, steps.root())
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id and tracker.run_status(run_id) == "RUNNING":
            tracker.run(run_id).tags({STATE_TAG: "failed"})
            tracker.run(run_id).end(False)


def _reopen(cfg: FerryConfig, run_id: str) -> bool:
    """Reopen the study's parent run; False when the store no longer has it."""
    from ferry.tracking import Tracker

    tracker = Tracker(cfg, steps.root())
    if tracker.run_status(run_id) is None:  # deleted, or another store: a new parent
        return False
    tracker.reopen(run_id)
    return True


def context(cfg: FerryConfig, parent_id: str, source: PretrainedSource,
            prepared: steps.Prepared, scratch: steps.Trained | None, began: float) -> Context:
    """What every trial shares, with the deadline: ``tune.timeout_s`` after the command
    began (``began``: epoch seconds), less what the report and the registration need."""
    limit = cfg.tune.timeout_s
    end = None if limit is None else began + limit - min(RESERVE_S, limit / 10)
    return Context(parent_id=parent_id, source=source, prepared=prepared, scratch=scratch,
                   deadline=end)


def refuse(cfg: FerryConfig) -> None:
    """What ``ferry tune`` cannot run, said before any work: a space whose values make
    invalid configs, DDP trials, a spread search over a storage only this machine sees."""
    from ferry.tuning.study import storage_url

    space.check(cfg)
    if cfg.distributed.world > 1:
        raise FerryError("ferry tune runs each trial in one process: set distributed.nproc "
                         "and distributed.nnodes to 1 (spread trials over workers with "
                         "tune.deployment instead)")
    if cfg.tune.deployment and storage_url(cfg, steps.root()).startswith("sqlite"):
        raise FerryError("tune.deployment spreads trials over workers, which must share the "
                         "study: set FERRY_TUNE_STORAGE (ferry stack up prints it) or "
                         "tune.storage to the team's Postgres, not a local SQLite file")


def prepare(cfg: FerryConfig, ctx: Context) -> int:
    """Queue this config's own settings as trial 0 of a new study (``baseline_first``), and
    compute the frozen features a drawn probe needs once, before any trial; the number of
    trials still to run comes back."""
    from ferry.transfer.strategies import REGISTRY
    from ferry.transfer.training import budgeted

    refuse(cfg)
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
    done = finished(study, ctx.prepared.split_key)
    if done < finished(study):
        log.info("study %s: %d trials count toward --trials (its other trials were on "
                 "another data version)", study.study_name, done)
    return max(0, cfg.tune.trials - done)


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
    if not wanted(cfg, study, ctx.deadline, ctx.prepared.split_key):
        return "nothing to do: the study has its trials"
    # workers opening the study at the same moment would share a seed and draw the same
    # random point: Optuna reseeds each one as it does for its own parallel jobs
    study.sampler.reseed_rng()
    ran: list[FrozenTrial] = []
    study.optimize(objective(cfg, ctx), n_trials=1, catch=(Exception,),
                   callbacks=[lambda _, trial: ran.append(trial)])
    return f"trial {ran[0].number}: {ran[0].state.name.lower()}" if ran else "no trial"


def wanted(cfg: FerryConfig, study: optuna.Study, deadline: float | None,
           split_key: str | None = None) -> bool:
    """Whether another trial should start: time is left (and no trial found too little of
    it), and the finished, running and queued trials on this data version are fewer than
    ``tune.trials``. Trials whose process stopped beating are failed (and queued) first."""
    if deadline is not None and (time.time() >= deadline or
                                 study.user_attrs.get(OUT_OF_TIME) == deadline):
        return False
    fail_stale(study)
    busy = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,
                                                        TrialState.WAITING)))
    return finished(study, split_key) + busy < cfg.tune.trials


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
    from ferry.tracking import Tracker

    best = best_trial(cfg, ctx.prepared.split_key)
    study = open_study(cfg, steps.root())
    done = study.user_attrs.get(REGISTERED, {})
    alias = cfg.tracking.alias
    if (done.get("trial"), done.get("name"), done.get("alias")) == (
            best.number, cfg.tracking.model_name, alias) and \
            Tracker(cfg, steps.root()).registry.alias_version(alias) == done.get("version"):
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
