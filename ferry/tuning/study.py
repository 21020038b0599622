"""The Optuna study: where it is stored, how it samples and prunes, and how it resumes.

Everything here is Optuna's own: ``RDBStorage`` (SQLite locally, the stack's Postgres for a
team, which is how trials spread over machines), ``TPESampler``, the median / successive
halving / Hyperband pruners, the heartbeat that fails a trial whose process died and
``RetryHeartbeatStaleTrialCallback`` that queues it again once. Ferry adds one thing: a trial
killed on *this* machine (``ferry tune`` SIGKILLed) is failed at once on restart, by its
recorded process id, instead of after the heartbeat's grace period, through the same retry
callback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from ferry.config import FerryConfig
from ferry.stack.processes import alive

STORAGE_ENV = "FERRY_TUNE_STORAGE"
OWNER = "ferry.owner"  # user attr: host:pid of the process running the trial
DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def storage_url(cfg: FerryConfig, root: Path) -> str:
    """``tune.storage``, else ``$FERRY_TUNE_STORAGE``, else SQLite beside the MLflow store."""
    if cfg.tune.storage:
        return cfg.tune.storage
    if os.environ.get(STORAGE_ENV):
        return os.environ[STORAGE_ENV]
    store = (root / "mlruns").resolve()
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'optuna.db'}"


def study_name(cfg: FerryConfig) -> str:
    return cfg.tune.study or f"{cfg.tracking.experiment}-tune"


def open_study(cfg: FerryConfig, root: Path) -> optuna.Study:
    """Create the study, or load it when it exists (the same name continues it)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # Ferry prints one line a trial
    optuna.logging.disable_default_handler()  # a failed trial's traceback goes to the log
    optuna.logging.enable_propagation()  # files (.ferry/logs/), not onto the terminal
    url = storage_url(cfg, root)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else \
        {"pool_pre_ping": True}
    storage = RDBStorage(url, engine_kwargs=engine, heartbeat_interval=cfg.tune.heartbeat_s,
                         grace_period=3 * cfg.tune.heartbeat_s,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                             max_retry=1))
    study = optuna.create_study(storage=storage, study_name=study_name(cfg),
                                direction="maximize", sampler=_sampler(cfg),
                                pruner=_pruner(cfg), load_if_exists=True)
    # a new sampler seeded as before would draw the points of the last process again
    held = sum(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    if held:
        study.sampler = _sampler(cfg, held)
    return study


def _sampler(cfg: FerryConfig, offset: int = 0) -> optuna.samplers.BaseSampler:
    """TPE; ``constant_liar`` keeps concurrent workers from drawing the same point. Seeded
    with ``tune.sampler.seed`` plus ``offset`` (the trials the study has begun when opened)."""
    import warnings

    with warnings.catch_warnings():  # constant_liar is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=cfg.tune.sampler.seed + offset,
                                          n_startup_trials=cfg.tune.sampler.startup_trials,
                                          constant_liar=True)


def _pruner(cfg: FerryConfig) -> optuna.pruners.BasePruner:
    """The pruner, fed one value per epoch (the step is the epoch)."""
    kind = cfg.tune.pruner
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.prune_startup_trials)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def recover(study: optuna.Study) -> list[FrozenTrial]:
    """Fail the trials left RUNNING by a process of this host that is gone (a killed
    ``ferry tune``), and queue each again once; the failed trials are returned so their
    MLflow runs can be closed. Trials of live processes and other hosts are left to the
    heartbeat."""
    host = socket.gethostname()
    retry = RetryHeartbeatStaleTrialCallback(max_retry=1)
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        who = str(trial.user_attrs.get(OWNER, ""))
        name, _, pid = who.rpartition(":")
        if name != host or not pid.isdigit() or alive(int(pid)):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # failed by another process's heartbeat check
            continue
        frozen = study.get_trials(deepcopy=False)[trial.number]
        retry(study, frozen)
        failed.append(frozen)
    return failed


def finished(study: optuna.Study, split_key: str | None = None) -> int:
    """Trials that count toward ``--trials``: complete or pruned after training, and failed
    trials that were not queued again (those count through their retry); with
    ``split_key``, only those of that data version. A trial pruned before it trained (no
    time left) does not count: its point is queued again."""
    trials = study.get_trials(deepcopy=False)
    retried = {t.system_attrs.get("failed_trial") for t in trials} - {None}
    return sum(1 for t in trials
               if (split_key is None or t.user_attrs.get("split_key") == split_key)
               and ((t.state in DONE and not _never_trained(t))
                    or (t.state == TrialState.FAIL and t.number not in retried)))


def _never_trained(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.PRUNED and not trial.intermediate_values


def fail_stale(study: optuna.Study) -> None:
    """Optuna's heartbeat check: trials whose process stopped beating are failed and queued
    again once (it otherwise runs only when a trial starts)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
