"""``ferry tune`` as a user runs it (a subprocess on the tiny model, the session's Prefect
server): a small study end to end, its trials as child runs of one tune run, the plots and
the table on it, the best trial registered; and a study whose ``ferry tune`` is SIGKILLed in
the middle of a trial, then started again: the killed trial is failed and run once more, the
same parent run continues, and the study ends with the trials it was asked for.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from ferry import tracking
from ferry.config import load_config
from ferry.tuning.study import storage_url
from tests.conftest import review_rows, tiny_overrides, write_csv

FERRY = str(Path(sys.executable).with_name("ferry"))
STATE_TAG = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned",
             TrialState.FAIL: "failed"}
DONE = (TrialState.COMPLETE, TrialState.PRUNED)
SPACE = ("tune.space={strategy.name: {choices: [linear_probe, full]}, "
         "train.lr: {low: 0.001, high: 0.01, log: true}, "
         "strategy.linear_probe.lr: {low: 0.003, high: 0.03, log: true}}")


def _overrides(root: Path, model: Path, rows: int, study: str, *extra: str) -> list[str]:
    data = write_csv(root / "reviews.csv", review_rows(rows))
    return [*tiny_overrides(model, data), "baseline=none", "shift.enabled=false",
            "train.device=cpu", "strategy.linear_probe.epochs=10", SPACE,
            f"tune.study={study}", *extra]


def _command(overrides: list[str], trials: int) -> list[str]:
    cmd = [FERRY, "tune", "--trials", str(trials)]
    for item in overrides:
        cmd += ["--set", item]
    return cmd


def _env(cli_env: dict[str, str], root: Path) -> dict[str, str]:
    env = {**cli_env, "PREFECT_HOME": str(root / "prefect"), "COLUMNS": "200"}
    for key in ("MLFLOW_TRACKING_URI", "FERRY_TUNE_STORAGE"):  # the project's own stores
        env.pop(key, None)
    return env


def _children(mc, parent) -> dict[int, object]:
    runs = mc.search_runs([parent.info.experiment_id],
                          f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    children = {int(r.data.tags["optuna.trial"]): r for r in runs}
    assert len(children) == len(runs)
    return children


def _check_children(mc, parent, trials: list) -> dict[int, object]:
    """Each trial of the study is one child run of the tune run, tagged with its state."""
    children = _children(mc, parent)
    assert sorted(children) == [t.number for t in trials]
    for t in trials:
        child = children[t.number]
        assert child.data.tags["ferry.kind"] == "trial"
        assert child.data.tags["optuna.trial.state"] == STATE_TAG[t.state], t.number
        assert child.info.run_id == t.user_attrs["mlflow_run_id"]
        assert child.info.status == ("FAILED" if t.state == TrialState.FAIL else "FINISHED")
        assert child.data.tags["ferry.strategy"] == t.params["strategy.name"]
    return children


def _best(trials: list):
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number))


def _check_challenger(mc, best) -> str:
    version = mc.get_model_version("tiny", mc.get_registered_model("tiny").aliases["challenger"])
    assert version.run_id == best.user_attrs["mlflow_run_id"]  # the trial's own child run
    return version.version


@pytest.fixture
def tune_project(project, monkeypatch):
    monkeypatch.delenv("FERRY_TUNE_STORAGE", raising=False)
    return project


def test_tune_study_end_to_end_registers_the_best_trial(tune_project, tiny_bert, cli_env):
    root = tune_project
    overrides = _overrides(root, tiny_bert, 200, "tiny-tune")
    began = time.monotonic()
    proc = subprocess.run(_command(overrides, 4), cwd=root, env=_env(cli_env, root),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    cfg = load_config(None, overrides)
    study = optuna.load_study(study_name="tiny-tune", storage=storage_url(cfg, root))
    trials = study.trials
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state in STATE_TAG for t in trials), [t.state for t in trials]
    assert trials[0].params == {"strategy.name": "full", "train.lr": 0.003}  # baseline first

    mc = tracking.client(cfg, root)
    parent = mc.get_run(study.user_attrs["mlflow_parent_run_id"])
    assert parent.data.tags["ferry.kind"] == "tune" and parent.info.status == "FINISHED"
    assert parent.data.tags["optuna.study"] == "tiny-tune"
    _check_children(mc, parent, trials)

    run_id = parent.info.run_id
    files = {a.path for a in mc.list_artifacts(run_id, "tune")}
    assert {"tune/trials.csv", "tune/optimization_history.png"} <= files, files
    table = pd.read_csv(mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="tune/trials.csv", dst_path=str(root / "download")))
    assert list(table["number"]) == [0, 1, 2, 3]
    assert list(table["state"]) == [t.state.name for t in trials]

    best = _best(trials)
    metrics = parent.data.metrics
    assert metrics["trials_total"] == 4 and metrics["best_trial"] == best.number
    assert metrics["trials_complete"] + metrics["trials_pruned"] + metrics["trials_fail"] == 4
    assert metrics["best_val_accuracy"] == pytest.approx(best.value)
    assert best.value >= 0.85, best.value  # 20 balanced validation rows: chance is 0.5
    version = _check_challenger(mc, best)
    assert parent.data.tags["ferry.registered_version"] == str(version)
    assert f"best: trial {best.number} " in proc.stdout
    model = mlflow.pyfunc.load_model("models:/tiny@challenger")
    assert list(model.predict(["great superb film", "dull boring plot"])) == ["fresh", "rotten"]
    print(f"tune: {time.monotonic() - began:.1f} s; states "
          f"{[t.state.name for t in trials]}; best trial {best.number} {best.value:.3f}")


def _has_trials(db: Path) -> bool:
    """Whether the study's SQLite file holds a trial yet (read-only: the test never creates
    Optuna's tables while ``ferry tune`` creates them)."""
    if not db.is_file():
        return False
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
            return con.execute("SELECT count(*) FROM trials").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def _wait_mid_trial(proc: subprocess.Popen, db: Path, url: str, name: str) -> int:
    """Poll the study until a trial is complete and another is training (an epoch of it
    reported, so its child run is started and tagged); that one's number."""
    deadline, study = time.monotonic() + 300, None
    while True:
        assert proc.poll() is None, "ferry tune ended before it could be killed"
        assert time.monotonic() < deadline, "no trial was running after one completed"
        if study is None and _has_trials(db):
            study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials(deepcopy=False) if study is not None else []
        running = [t.number for t in trials
                   if t.state == TrialState.RUNNING and t.intermediate_values]
        if running and any(t.state == TrialState.COMPLETE for t in trials):
            return running[0]
        time.sleep(0.1)


def test_tune_sigkilled_mid_trial_resumes_the_same_study(tune_project, tiny_bert, cli_env):
    root, n = tune_project, 4
    overrides = _overrides(root, tiny_bert, 400, "killed", "train.epochs=3")
    cfg = load_config(None, overrides)
    url, db = storage_url(cfg, root), root / "mlruns" / "optuna.db"
    env, cmd = _env(cli_env, root), _command(overrides, n)
    began = time.monotonic()
    with (root / "first.txt").open("w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            seen = _wait_mid_trial(proc, db, url, "killed")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    study = optuna.load_study(study_name="killed", storage=url)
    running = [t for t in study.trials if t.state == TrialState.RUNNING]
    assert [t.number for t in running] == [seen]  # the kill caught it training
    killed = running[0]
    assert killed.user_attrs["ferry.owner"] == f"{socket.gethostname()}:{proc.pid}"
    parent_id = study.user_attrs["mlflow_parent_run_id"]
    killed_at = time.monotonic() - began

    again = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    study = optuna.load_study(study_name="killed", storage=url)
    trials = study.trials
    assert [t.number for t in trials] == list(range(len(trials)))  # no duplicates, no gaps
    assert trials[killed.number].state == TrialState.FAIL
    assert [t.number for t in trials if t.state == TrialState.FAIL] == [killed.number]
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert len(retries) == 1 and retries[0].number > killed.number
    retry = retries[0]
    assert retry.state in DONE and retry.params == killed.params
    assert sum(t.state in DONE for t in trials) == n == len(trials) - 1
    assert study.user_attrs["mlflow_parent_run_id"] == parent_id  # the same tune run

    mc = tracking.client(cfg, root)
    parent = mc.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = _check_children(mc, parent, trials)
    assert children[killed.number].info.run_id == killed.user_attrs["mlflow_run_id"]
    assert children[killed.number].info.status == "FAILED"
    assert retry.user_attrs["mlflow_run_id"] != killed.user_attrs["mlflow_run_id"]
    assert parent.data.metrics["trials_fail"] == 1 and parent.data.metrics["trials_total"] == n + 1
    _check_challenger(mc, _best(trials))
    print(f"killed trial {killed.number} at {killed_at:.1f} s, retried as {retry.number} "
          f"({retry.state.name}); total {time.monotonic() - began:.1f} s")
