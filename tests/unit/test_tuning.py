"""``ferry tune`` without training: which knobs a strategy draws, the draws themselves, the
baseline trial, the ``tune`` block's validation, and the study's resume bookkeeping
(``finished`` and ``recover``) on real Optuna studies."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState, create_trial

from ferry.config import load_config
from ferry.errors import ConfigError, FerryError
from ferry.tuning import space
from ferry.tuning.study import (
    OWNER,
    STORAGE_ENV,
    finished,
    open_study,
    owner,
    recover,
    storage_url,
    study_name,
)

pytestmark = [pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
              pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")]  # ask()
FINE_TUNING = {"full", "freeze_bottom", "gradual_unfreeze", "lora"}
ALL = FINE_TUNING | {"linear_probe"}
# No ``when`` anywhere: which strategy reads which key is inferred.
INFERRED = ("tune.space={strategy.name: {choices: [full, freeze_bottom, gradual_unfreeze, "
            "lora, linear_probe]}, train.lr: {low: 0.0001, high: 0.01, log: true}, "
            "train.epochs: {low: 1, high: 3}, train.batch_size: {choices: [16, 32]}, "
            "model.dropout: {low: 0.0, high: 0.3}, "
            "strategy.backbone_lr_factor: {low: 0.05, high: 1.0, log: true}, "
            "strategy.freeze_bottom.frozen_layers: {low: 1, high: 2}, "
            "strategy.lora.r: {choices: [4, 8, 16]}, "
            "strategy.linear_probe.lr: {low: 0.001, high: 0.03, log: true}}")
EXPECTED = {  # key -> the strategies that read it
    "train.lr": FINE_TUNING, "train.epochs": FINE_TUNING, "train.batch_size": ALL,
    "model.dropout": ALL, "strategy.backbone_lr_factor": {"full", "freeze_bottom",
                                                           "gradual_unfreeze"},
    "strategy.freeze_bottom.frozen_layers": {"freeze_bottom"}, "strategy.lora.r": {"lora"},
    "strategy.linear_probe.lr": {"linear_probe"}}


@pytest.fixture
def cfg():
    return load_config(None, [INFERRED, "train.epochs=2", "train.lr=0.003"])


def test_active_infers_which_strategy_reads_each_key(cfg):
    for key, readers in EXPECTED.items():
        spec = cfg.tune.space[key]
        assert spec.when is None
        drawn = {s for s in ALL if space.active(cfg, key, spec, s)}
        assert drawn == readers, key
    assert not any(space.active(cfg, "strategy.name", cfg.tune.space["strategy.name"], s)
                   for s in ALL)  # drawn first, never as a knob


def test_when_overrides_the_inference(cfg):
    forced = load_config(None, ["tune.space={strategy.lora.r: {choices: [4, 8], "
                                "when: [full]}, train.lr: {low: 0.001, high: 0.01, "
                                "when: [linear_probe]}}"])
    lora_r, lr = forced.tune.space["strategy.lora.r"], forced.tune.space["train.lr"]
    assert {s for s in ALL if space.active(forced, "strategy.lora.r", lora_r, s)} == {"full"}
    assert {s for s in ALL if space.active(forced, "train.lr", lr, s)} == {"linear_probe"}


def test_suggest_draws_only_the_drawn_strategys_keys_within_bounds(cfg):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        values = space.suggest(trial, cfg)
        strategy = values["strategy.name"]
        seen.add(strategy)
        assert set(values) == {"strategy.name"} | {k for k, r in EXPECTED.items()
                                                   if strategy in r}, values
        assert trial.params == values  # drawn through Optuna, under the dotted keys
        for key, value in values.items():
            spec = cfg.tune.space[key]
            if spec.choices is not None:
                assert value in spec.choices
            else:
                assert spec.low <= value <= spec.high, (key, value)
                assert isinstance(value, int) == spec.integer, (key, value)
        child = space.with_values(cfg, values)  # a valid config runs each draw
        assert child.strategy.name == strategy
        if "train.lr" in values:
            assert child.train.lr == values["train.lr"]
        study.tell(trial, 0.5)
    assert seen == ALL
    lr = next(t.distributions["train.lr"] for t in study.trials if "train.lr" in t.params)
    assert isinstance(lr, FloatDistribution) and lr.log and (lr.low, lr.high) == (1e-4, 1e-2)


def test_suggest_without_strategy_in_the_space_uses_the_configs():
    cfg = load_config(None, ["strategy.name=lora", "tune.space={strategy.lora.r: "
                             "{choices: [4, 8]}, strategy.linear_probe.lr: "
                             "{low: 0.001, high: 0.01}, model.dropout: {low: 0.0, high: 0.2}}"])
    assert space.strategies(cfg) == ["lora"]
    trial = optuna.create_study().ask()
    assert set(space.suggest(trial, cfg)) == {"strategy.lora.r", "model.dropout"}


def test_baseline_is_the_configs_own_values(cfg):
    assert cfg.strategy.name == "full"
    own = space.baseline(cfg)
    assert own == {"strategy.name": "full", "train.lr": 0.003, "train.epochs": 2,
                   "train.batch_size": cfg.train.batch_size, "model.dropout": cfg.model.dropout,
                   "strategy.backbone_lr_factor": cfg.strategy.backbone_lr_factor}
    assert space.with_values(cfg, own) == cfg  # trial 0 runs exactly this config
    probe = load_config(None, [INFERRED, "train.epochs=2", "strategy.name=linear_probe",
                               "strategy.linear_probe.lr=0.004"])
    assert space.baseline(probe) == {
        "strategy.name": "linear_probe", "train.batch_size": probe.train.batch_size,
        "model.dropout": probe.model.dropout, "strategy.linear_probe.lr": 0.004}


def test_baseline_is_none_when_the_space_excludes_the_configs_settings():
    two = "tune.space={strategy.name: {choices: [linear_probe, full]}, " \
          "strategy.lora.r: {choices: [4, 16]}, train.lr: {low: 0.001, high: 0.01}}"
    assert space.baseline(load_config(None, [two, "strategy.name=lora"])) is None
    three = two.replace("[linear_probe, full]", "[linear_probe, full, lora]")
    assert space.baseline(load_config(None, [three, "strategy.name=lora",
                                             "strategy.lora.r=8"])) is None  # 8: not a choice
    assert space.baseline(load_config(None, [three, "strategy.name=lora",
                                             "strategy.lora.r=16", "train.lr=0.002"])) == {
        "strategy.name": "lora", "strategy.lora.r": 16, "train.lr": 0.002}


@pytest.mark.parametrize(("space_yaml", "named"), [
    ("{train.lrr: {low: 0.001, high: 0.01}}", "'train.lrr'"),
    ("{train: {low: 1, high: 2}}", "'train'"),  # a section, not a setting
    ("{tune.trials: {low: 1, high: 5}}", "'tune.trials'"),  # the tune block itself
    ("{strategy.name: {choices: [full, fine_tune]}}", "fine_tune"),
    ("{train.lr: {low: 0.01, high: 0.001}}", "low 0.01 is above high 0.001"),
    ("{train.lr: {low: 0.0, high: 0.01, log: true}}", "log: true needs low > 0"),
    ("{train.lr: {choices: [0.1], low: 0.01, high: 0.1}}", "not both"),
    ("{strategy.lora.r: {choices: [4], when: [lora, loraa]}}", "loraa"),
])
def test_bad_space_is_a_config_error_naming_it(space_yaml, named):
    with pytest.raises(ConfigError) as err:
        load_config(None, [f"tune.space={space_yaml}"])
    assert named in str(err.value) and "tune" in str(err.value), str(err.value)


def test_with_values_refuses_a_value_the_config_refuses(cfg):
    with pytest.raises(ConfigError, match=r"model\.dropout"):
        space.with_values(cfg, {"model.dropout": 1.5})


def _add(study: optuna.Study, state: TrialState, lr: float, trained: bool = True,
         split_key: str = "v1") -> int:
    """A finished trial; a pruned one has epochs reported unless ``trained`` is false."""
    dist = {"train.lr": FloatDistribution(1e-4, 1e-2, log=True)}
    epochs = {1: 0.6} if state == TrialState.PRUNED and trained else {}
    study.add_trial(create_trial(state=state, params={"train.lr": lr}, distributions=dist,
                                 value=0.7 if state == TrialState.COMPLETE else None,
                                 intermediate_values=epochs,
                                 user_attrs={"split_key": split_key}))
    return study.trials[-1].number


def test_finished_counts_a_failed_trial_through_its_retry():
    study = optuna.create_study(direction="maximize")
    _add(study, TrialState.COMPLETE, 1e-3)
    failed = _add(study, TrialState.FAIL, 2e-3)
    RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.trials[failed])
    assert study.trials[-1].state == TrialState.WAITING
    assert finished(study) == 1  # the failed one counts through its (queued) retry
    _add(study, TrialState.PRUNED, 3e-3)
    _add(study, TrialState.FAIL, 4e-3)  # failed and not queued again: it counts
    assert finished(study) == 3
    retry = study.ask()  # the queued retry runs next, with the failed trial's values
    assert retry.params == {"train.lr": 2e-3}
    assert study.trials[retry.number].system_attrs["failed_trial"] == failed
    assert finished(study) == 3  # running
    study.tell(retry, 0.8)
    assert finished(study) == 4
    _add(study, TrialState.PRUNED, 5e-3, trained=False)  # pruned before it trained (time)
    assert finished(study) == 4
    _add(study, TrialState.COMPLETE, 6e-3, split_key="v2")  # another data version
    assert finished(study) == 5 and finished(study, "v2") == 1


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


def _running(study: optuna.Study, who: str | None, lr: float) -> int:
    study.enqueue_trial({"train.lr": lr})
    trial = study.ask()  # RUNNING, as a trial of a ``ferry tune`` process is
    assert trial.suggest_float("train.lr", 1e-4, 1e-2, log=True) == lr
    if who is not None:
        trial.set_user_attr(OWNER, who)
    trial.set_user_attr("mlflow_run_id", f"run-{trial.number}")
    return trial.number


def test_recover_fails_and_requeues_trials_of_dead_local_processes(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    cfg = load_config(None, [f"tune.storage={url}", "tune.study=recover"])
    study = open_study(cfg, tmp_path)
    host, dead = socket.gethostname(), _dead_pid()
    done = _add(study, TrialState.COMPLETE, 1e-3)
    killed = _running(study, f"{host}:{dead}", 2e-3)
    live = _running(study, owner(), 3e-3)  # this process: alive
    assert owner() == f"{host}:{os.getpid()}"
    elsewhere = _running(study, f"another-host.invalid:{dead}", 4e-3)  # the heartbeat's
    unowned = _running(study, None, 5e-3)

    back = recover(open_study(cfg, tmp_path))
    assert [t.number for t in back] == [killed]
    assert back[0].user_attrs["mlflow_run_id"] == f"run-{killed}"  # to close its run

    trials = optuna.load_study(study_name="recover", storage=url).trials
    assert trials[done].state == TrialState.COMPLETE
    assert trials[killed].state == TrialState.FAIL
    for number in (live, elsewhere, unowned):
        assert trials[number].state == TrialState.RUNNING
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    assert len(waiting) == 1
    assert waiting[0].system_attrs["failed_trial"] == killed
    assert waiting[0].params == {"train.lr": 2e-3} == trials[killed].params
    assert recover(open_study(cfg, tmp_path)) == []  # once only
    assert len(open_study(cfg, tmp_path).get_trials(states=(TrialState.WAITING,))) == 1
    assert finished(study) == 1  # the killed one counts through its retry

    # the retry is killed as well: failed, not queued a second time, and it counts
    again = study.ask()
    assert again.number == waiting[0].number and math.isclose(again.params["train.lr"], 2e-3)
    again.set_user_attr(OWNER, f"{host}:{dead}")
    assert [t.number for t in recover(study)] == [again.number]
    trials = study.trials
    assert trials[again.number].state == TrialState.FAIL
    assert not [t for t in trials if t.state == TrialState.WAITING]
    assert finished(study) == 2


def test_storage_is_the_config_then_the_environment_then_sqlite(tmp_path, monkeypatch):
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    cfg = load_config(None, ["tracking.experiment=reviews"])
    local = storage_url(cfg, tmp_path)
    assert local == f"sqlite:///{(tmp_path / 'mlruns').resolve() / 'optuna.db'}"
    assert study_name(cfg) == "reviews-tune"
    monkeypatch.setenv(STORAGE_ENV, "postgresql://ferry:secret@db:5432/optuna")
    assert storage_url(cfg, tmp_path) == "postgresql://ferry:secret@db:5432/optuna"
    own = load_config(None, [f"tune.storage={local}", "tune.study=mine"])
    assert storage_url(own, tmp_path) == local and study_name(own) == "mine"


def test_wanted_counts_finished_running_and_queued_trials():
    from ferry.tuning.search import wanted

    study = optuna.create_study(direction="maximize")
    _add(study, TrialState.COMPLETE, 1e-3)
    study.ask()  # running
    study.enqueue_trial({"train.lr": 2e-3})  # waiting
    three, four = (load_config(None, [f"tune.trials={n}"]) for n in (3, 4))
    assert not wanted(three, study, None)
    assert wanted(four, study, None) and wanted(four, study, time.time() + 60)
    assert not wanted(four, study, time.time() - 1)  # past the deadline


def test_a_study_opened_again_draws_new_points_reproducibly(tmp_path):
    """Each ``ferry tune`` (a resume, a worker's trial) opens the study with a new sampler:
    seeded alike, it would replay the draws of the process before, trial after trial."""
    def draws(name: str) -> list[float]:
        cfg = load_config(None, [f"tune.storage=sqlite:///{tmp_path / 'optuna.db'}",
                                 f"tune.study={name}", "tune.sampler.startup_trials=10"])
        out = []
        for _ in range(3):
            study = open_study(cfg, tmp_path)  # as a process started again does
            trial = study.ask()
            out.append(trial.suggest_float("train.lr", 1e-4, 1e-2, log=True))
            study.tell(trial, 0.5)
        return out

    first = draws("replay")
    assert len(set(first)) == 3, first
    assert draws("again") == first  # the seed still makes a new study reproducible


def _epoch_callback(deadline: float, epochs: int = 3):
    """A trial's per-epoch callback (the one the training loop calls) on a fresh study."""
    from types import SimpleNamespace

    from ferry.tuning.trial import Context, _pruning

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    cfg = load_config(None, [f"train.epochs={epochs}"])
    ctx = Context.model_construct(prepared=SimpleNamespace(rows={"train": 100}),
                                  deadline=deadline)
    return trial, _pruning(trial, cfg, ctx)


def test_a_trial_is_pruned_when_its_next_epoch_would_end_past_the_deadline():
    trial, on_epoch = _epoch_callback(time.time() + 3600)
    on_epoch(1, {"val_accuracy": 0.7, "epoch_seconds": 5.0})  # an hour left: goes on
    assert trial.study.trials[0].intermediate_values == {1: 0.7}
    trial, on_epoch = _epoch_callback(time.time() + 2)
    with pytest.raises(optuna.TrialPruned, match=r"^time: epoch 2 would end past"):
        on_epoch(1, {"val_accuracy": 0.7, "epoch_seconds": 5.0})  # 5 s epochs, 2 s left
    trial, on_epoch = _epoch_callback(time.time() - 1, epochs=1)
    on_epoch(1, {"val_accuracy": 0.7, "epoch_seconds": 5.0})  # the last epoch: never pruned


def test_refused_before_any_work(tmp_path, monkeypatch):
    """What ``ferry tune`` cannot run fails in its first second, naming the keys."""
    from ferry.tuning.search import refuse

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(STORAGE_ENV, raising=False)
    with pytest.raises(ConfigError, match=r"train\.batch_size=0 is not a valid setting"):
        refuse(load_config(None, ["tune.space={strategy.name: {choices: [full]}, "
                                  "train.batch_size: {choices: [0, 16]}}"]))
    with pytest.raises(ConfigError, match="drawn only for \\['lora'\\]"):
        refuse(load_config(None, ["tune.space={strategy.name: {choices: [full]}, "
                                  "strategy.lora.r: {choices: [4], when: [lora]}}"]))
    with pytest.raises(FerryError, match=r"distributed\.nproc"):
        refuse(load_config(None, ["distributed.nproc=2"]))
    with pytest.raises(FerryError, match="FERRY_TUNE_STORAGE"):
        refuse(load_config(None, ["tune.deployment=ferry-tune-trial/tune-trial"]))
    with pytest.raises(ConfigError, match="must not hold a password") as err:
        load_config(None, ["tune.storage=postgresql://ferry:s3cret@db/optuna"])
    assert "s3cret" not in str(err.value)
    refuse(load_config(None, []))  # the default space is fine
