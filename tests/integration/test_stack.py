"""The team stack without Docker: Postgres, MLflow server, Prefect server and a worker as real
processes on loopback; deployments from prefect.yaml, triggered through the Prefect API; what
the team sees of it in the Prefect UI, opened in headless Chromium."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ferry import stack as stack_mod
from tests.browser import ARTIFACTS, Browser
from tests.conftest import dvc_project, review_rows, tiny_overrides, write_csv

REPO = Path(__file__).parents[2]
EPOCH = re.compile(r"epoch (\d+/\d+) .*val_accuracy")  # one line per epoch, on "ferry"


def _prefect(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """A project folder (flows, tasks, prefect.yaml) with its own running stack, started once
    for the tests of this module that need one (each uses its own model data and names of
    flow runs; they run in file order: the retrain test sees a fresh registry)."""
    project = tmp_path_factory.mktemp("stack") / "proj"
    for part in ("flows", "tasks"):
        shutil.copytree(REPO / part, project / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    ports = stack_mod.Ports(*(stack_mod.free_port() for _ in range(4)))
    running = stack_mod.up(project / ".ferry" / "stack", ports, worker_cwd=project)
    try:
        yield project, running
    finally:
        stack_mod.down(project / ".ferry" / "stack")
        for name, pid in running.pids.items():
            assert not stack_mod._alive(pid), f"{name} (pid {pid}) still running"
        shutil.rmtree(Path(running.postgres_data).parent, ignore_errors=True)


def test_scheduled_retrain_registers_champion_then_skips_unchanged_data(stack, tiny_bert,
                                                                        tmp_path, monkeypatch):
    """On a DVC-tracked data version: the first retrain trains and registers the champion
    (its epochs in the Prefect logs and UI), the second sees the same version and skips."""
    from mlflow.tracking import MlflowClient

    project, running = stack
    for key, value in running.client_env().items():  # this process's MLflow client logs in
        monkeypatch.setenv(key, value)
    env = {**os.environ, **running.client_env(), "FERRY_PROJECT_DIR": str(project),
           "PREFECT_HOME": str(tmp_path / "cli-home"), "COLUMNS": "250"}
    data = dvc_project(project, name="good.csv", empty_cache=False)
    outs = yaml.safe_load((project / "data.dvc").read_text(encoding="utf-8"))["outs"]
    data_md5 = outs[0]["md5"]
    stack_mod.deploy(running.client_env(), project)
    listed = _prefect(["deployment", "ls"], env, project)
    assert "nightly-retrain" in listed.stdout and "weekly-sweep" in listed.stdout
    overrides = [*tiny_overrides(tiny_bert, data), "data.dvc_file=data.dvc",
                 "promotion.min_accuracy=0.0", "promotion.min_macro_f1=0.0"]
    params = json.dumps({"config": None, "overrides": overrides})
    trigger = ["deployment", "run", "ferry-retrain/nightly-retrain", "--params", params,
               "--watch", "--watch-timeout", "500"]
    first = _prefect(trigger, env, project)
    log = Path(running.home) / "worker" / "log.txt"
    assert first.returncode == 0, first.stdout[-2000:] + log.read_text(errors="replace")[-4000:]
    mc = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    champion = mc.get_model_version_by_alias("tiny", "champion")
    assert champion.version == "1" and champion.tags["data.md5"] == data_md5
    assert mc.get_run(champion.run_id).data.tags["data.dvc_tracked"] == "True"
    assert champion.tags["promotion.decision"] == "promote"
    run_id, messages = _transfer_run_logs(running)
    epochs = [m.group(1) for m in map(EPOCH.search, messages) if m]
    assert epochs == ["1/2", "2/2"] * 2, messages  # fine-tune, then the scratch baseline
    _ui_shows_deployments_and_epoch_logs(running, run_id)
    second = _prefect(trigger, env, project)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert [v.version for v in mc.search_model_versions("name='tiny'")] == ["1"]
    worker_log = (Path(running.home) / "worker" / "log.txt").read_text(errors="replace")
    assert f"data version {data_md5} is the one tiny v1 (@champion) " \
        "was trained on: skipping training" in worker_log
    _unauthenticated_clients_are_refused(running, project, monkeypatch)


@contextlib.contextmanager
def _prefect_api(running):
    """A Prefect client of the stack's API, with its auth string."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    stack_env = running.client_env()
    with temporary_settings({PREFECT_API_URL: stack_env["PREFECT_API_URL"],
                             PREFECT_API_AUTH_STRING: stack_env["PREFECT_API_AUTH_STRING"]}), \
            get_client(sync_client=True) as client:
        yield client


def _transfer_run_logs(running) -> tuple[str, list[str]]:
    """The ferry-transfer flow run (the retrain's subflow) and its log messages, oldest
    first, as the Prefect API has them (shipped in batches: wait for the run's last line)."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.client.schemas.sorting import LogSort

    with _prefect_api(running) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["ferry-transfer"])))
        assert len(runs) == 1 and runs[0].state.is_completed(), runs
        only_this = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[runs[0].id]))
        deadline = time.monotonic() + 30
        while True:
            logs: list = []
            while page := client.read_logs(only_this, limit=200, offset=len(logs),
                                           sort=LogSort.TIMESTAMP_ASC):
                logs += page
            finished = any(e.task_run_id is None and "Finished in state" in e.message
                           for e in logs)  # the flow run's own last line
            if finished or time.monotonic() > deadline:
                return str(runs[0].id), [entry.message for entry in logs]
            time.sleep(1)


def _ui_shows_deployments_and_epoch_logs(running, flow_run_id: str) -> None:
    """The Prefect UI (served by the stack's server) asks for the auth string, then shows
    the deployments and the training's epochs in the transfer run's logs."""
    auth = stack_mod.credentials(Path(running.home))["prefect_auth"]
    url = running.prefect_url
    shots = [ARTIFACTS / "prefect-ui-deployments.png", ARTIFACTS / "prefect-ui-run-logs.png"]
    with Browser() as page:
        page.open(f"{url}/")
        page.wait_for_text("Login")  # nothing shows without the auth string
        # what the UI's login form stores: the whole auth string, base64 (basic auth)
        page.set_local_storage("prefect-password", base64.b64encode(auth.encode()).decode())
        page.open(f"{url}/deployments")
        page.wait_for_text("nightly-retrain")
        page.wait_for_text("weekly-sweep")
        page.screenshot(shots[0])
        page.open(f"{url}/runs/flow-run/{flow_run_id}?tab=Logs")
        page.wait_for_text(EPOCH, scroll=True)
        page.screenshot(shots[1])
    assert all(shot.stat().st_size > 10_000 for shot in shots)


def _unauthenticated_clients_are_refused(running, project, monkeypatch) -> None:
    """Access: without the stack's credentials nobody registers, moves an alias or talks to
    the Prefect API; the credentials are nowhere in the run's logged params."""
    import httpx
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    creds = stack_mod.credentials(Path(running.home))
    assert (Path(running.home) / stack_mod.CREDENTIALS).stat().st_mode & 0o077 == 0
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(key)
    anonymous = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    with pytest.raises(MlflowException, match=r"401|Unauthorized|credentials"):
        anonymous.create_registered_model("intruder")
    with pytest.raises(MlflowException, match=r"401|Unauthorized|credentials"):
        anonymous.set_registered_model_alias("tiny", "champion", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    with pytest.raises(MlflowException, match=r"401|Unauthorized|credentials"):
        anonymous.set_registered_model_alias("tiny", "champion", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", creds["mlflow_password"])
    owner = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    assert owner.get_model_version_by_alias("tiny", "champion").version == "1"
    assert [m.name for m in owner.search_registered_models()] == ["tiny"]
    runs = owner.search_runs([e.experiment_id for e in owner.search_experiments()])
    logged = " ".join(f"{k}={v}" for r in runs for k, v in r.data.params.items())
    assert creds["mlflow_password"] not in logged and creds["prefect_auth"] not in logged
    api = running.prefect_api
    assert httpx.post(f"{api}/flows/filter", json={}).status_code == 401
    user, password = creds["prefect_auth"].split(":", 1)
    assert httpx.post(f"{api}/flows/filter", json={}, auth=(user, password)).status_code == 200


def test_sweep_spreads_strategies_over_the_pool_workers(stack, tiny_bert, tmp_path,
                                                        monkeypatch):
    """``sweep.deployment``: each strategy is a flow run of the sweep-member deployment,
    picked up by the pool's worker; the parent compares them and registers the best."""
    from mlflow.tracking import MlflowClient

    project, running = stack
    env = {**os.environ, **running.client_env(), "FERRY_PROJECT_DIR": str(project),
           "PREFECT_HOME": str(tmp_path / "cli-home"), "COLUMNS": "250"}
    stack_mod.deploy(running.client_env(), project)
    data = write_csv(project / "good.csv", review_rows(120))
    overrides = [*tiny_overrides(tiny_bert, data), "shift.enabled=false",
                 "sweep.strategies=[linear_probe, full]",
                 "sweep.deployment=ferry-sweep-member/sweep-member"]
    cmd = [str(Path(sys.executable).with_name("ferry")), "sweep"]
    for item in overrides:
        cmd += ["--set", item]
    out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    log = Path(running.home) / "worker" / "log.txt"
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + \
        log.read_text(errors="replace")[-3000:]
    assert "best by validation" in out.stdout
    stack_env = running.client_env()
    with _prefect_api(running) as client:
        members = [r for r in client.read_flow_runs() if r.name.startswith("sweep-")]
    assert sorted(r.name.rsplit("-", 1)[1] for r in members) == ["full", "linear_probe"]
    assert all(r.state.is_completed() and r.work_pool_name == "ferry" for r in members)
    assert "ferry-sweep-member" in log.read_text(errors="replace")  # the worker ran them
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, stack_env[key])
    mc = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    version = mc.get_model_version_by_alias("tiny", "challenger")
    parent = mc.get_run(version.run_id).data.tags["mlflow.parentRunId"]
    children = mc.search_runs([mc.get_run(parent).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent}'")
    assert sorted(r.data.tags["ferry.strategy"] for r in children) == ["full", "linear_probe"]
    _drifted_batch_starts_a_retrain(project, running, env, overrides)


SECOND_WORKER = "ferry-second-worker"
TRIAL_LINE = re.compile(r"trial (\d+) ")  # ferry.tune's line when a trial ends
TRIALS = 2  # one per worker, side by side: what spreading shows (each costs a flow run)
TUNE_SPACE = ("tune.space={strategy.name: {choices: [linear_probe, full]}, "
              "train.lr: {low: 0.0005, high: 0.005, log: true}}")


def test_tune_spreads_trials_over_two_workers(stack, tiny_bert, tmp_path, monkeypatch):
    """``tune.deployment``: each trial is a flow run of the tune-trial deployment, run by
    either of two workers of the pool, side by side, against one study in the stack's
    Postgres; every trial is a child run of the tune run, the best is registered."""
    import itertools

    import optuna
    from mlflow.tracking import MlflowClient
    from optuna.trial import TrialState
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    project, running = stack
    stack_env = running.client_env()
    env = {**os.environ, **stack_env, "FERRY_PROJECT_DIR": str(project),
           "PREFECT_HOME": str(tmp_path / "cli-home"), "COLUMNS": "250"}
    stack_mod.deploy(stack_env, project)
    data = write_csv(project / "good.csv", review_rows(240))
    study_name = "spread-tune"
    overrides = [*tiny_overrides(tiny_bert, data), "shift.enabled=false",
                 "tracking.model_name=tiny-tune",  # apart from the sweep's (shared stack)
                 "train.passes_per_epoch=6",  # a full trial: some seconds, so two overlap
                 TUNE_SPACE, "tune.deployment=ferry-tune-trial/tune-trial",
                 "tune.concurrency=2", f"tune.study={study_name}"]
    cmd = [str(Path(sys.executable).with_name("ferry")), "tune", "--trials", str(TRIALS)]
    for item in overrides:
        cmd += ["--set", item]
    logs = [Path(running.home) / "worker" / "log.txt"]
    with _second_worker(running, project, tmp_path / "worker-2") as second_log:
        logs.append(second_log)
        out = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True,
                             timeout=600)
    tails = "".join(f"\n--- {log}\n" + log.read_text(errors="replace")[-3000:]
                    for log in logs)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:] + tails

    with _prefect_api(running) as client:  # the trials' flow runs, and who ran them
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(
            name=DeploymentFilterName(any_=["tune-trial"])))
    assert len(runs) >= TRIALS, runs
    assert all(r.state.is_completed() and r.work_pool_name == stack_mod.POOL for r in runs), \
        [(r.name, r.state, r.work_pool_name) for r in runs]
    workers = {r.labels.get("prefect.worker.name") for r in runs}
    assert len(workers) == 2 and SECOND_WORKER in workers, workers  # the stack's, the 2nd

    study = optuna.load_study(study_name=study_name, storage=stack_env["FERRY_TUNE_STORAGE"])
    trials = study.get_trials(deepcopy=False)
    table = [(t.number, t.state.name, t.params, t.user_attrs.get("ferry.owner"),
              t.datetime_start, t.datetime_complete) for t in trials]
    assert sorted(t.number for t in trials) == list(range(TRIALS)), table  # none twice
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), table
    lrs = [t.params["train.lr"] for t in trials if "train.lr" in t.params]
    assert len(set(lrs)) == len(lrs), table  # each worker process drew its own point
    ran_on = _trial_workers(running, runs, len(trials))
    assert sorted(ran_on) == list(range(TRIALS)) and all(len(w) == 1 for w in ran_on.values()), \
        ran_on  # each trial in one flow run
    assert set().union(*ran_on.values()) == workers, ran_on  # both workers ran trials
    owners = {t.number: t.user_attrs["ferry.owner"] for t in trials}
    side_by_side = [(a.number, b.number) for a, b in itertools.combinations(trials, 2)
                    if a.datetime_start < b.datetime_complete
                    and b.datetime_start < a.datetime_complete
                    and owners[a.number] != owners[b.number]]
    assert side_by_side, table  # two trials ran at the same time, in two processes

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, stack_env[key])
    mc = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    parent = study.user_attrs["mlflow_parent_run_id"]
    children = {r.data.tags["optuna.trial"]: r for r in mc.search_runs(
        [mc.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'")
        if r.data.tags.get("ferry.kind") == "trial"}
    assert sorted(children) == [str(n) for n in range(TRIALS)], sorted(children)
    for t in trials:
        child = children[str(t.number)]
        assert child.info.run_id == t.user_attrs["mlflow_run_id"]
        assert child.data.tags["optuna.trial.state"] == t.state.name.lower()
        assert child.info.status == "FINISHED"
    best = max((t for t in trials if t.state == TrialState.COMPLETE),
               key=lambda t: (t.value, -t.number))
    version = mc.get_model_version_by_alias("tiny-tune", "challenger")
    assert version.run_id == best.user_attrs["mlflow_run_id"]
    assert mc.get_run(parent).data.tags["ferry.registered_version"] == version.version


def _trial_workers(running, runs, n_trials: int, timeout: float = 30) -> dict[int, set]:
    """Trial number -> the workers whose flow runs logged it ("trial 3 full: best val..."),
    from the runs' logs in the Prefect API (shipped in batches: wait for every trial's)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.monotonic() + timeout
    with _prefect_api(running) as client:
        while True:
            ran: dict[int, set] = {}
            for run in runs:
                logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(
                    any_=[run.id])), limit=200)
                for number in {int(m.group(1)) for e in logs
                               if (m := TRIAL_LINE.match(e.message))}:
                    ran.setdefault(number, set()).add(run.labels.get("prefect.worker.name"))
            if len(ran) >= n_trials or time.monotonic() > deadline:
                return ran
            time.sleep(1)


@contextlib.contextmanager
def _second_worker(running, project: Path, folder: Path):
    """Another process worker of the pool, started as ``ferry stack up`` starts its own
    (same command and environment; its own PREFECT_HOME, log and process group), named, one
    flow run at a time and polling every second: it takes each new trial it is free for,
    the stack's worker (a poll every 10 s) the one it is not free for."""
    from ferry.stack.processes import kill_group, wait_until
    from ferry.stack.services import venv_script

    folder.mkdir(parents=True)
    log = folder / "log.txt"
    cmd = [venv_script("prefect"), "worker", "start", "--pool", stack_mod.POOL,
           "--type", "process", "--name", SECOND_WORKER, "--limit", "1"]
    env = {**os.environ, **running.client_env(), "PREFECT_HOME": str(folder / "home"),
           "FERRY_PROJECT_DIR": str(project.resolve()), "PREFECT_WORKER_QUERY_SECONDS": "1"}
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: "started!" in log.read_text(errors="replace"),
                   "the second worker", log)
        yield log
    finally:
        kill_group(proc.pid, 10)
        proc.wait(timeout=15)  # reaped: a zombie of ours would still look alive


def _drifted_batch_starts_a_retrain(project: Path, running, env: dict,
                                    overrides: list[str]) -> None:
    """The drift loop on the stack (sharing the sweep's stack and its registered model):
    `ferry predict` on another kind of text with monitor.on_drift=retrain starts a flow run of
    the retrain deployment, with the drift figures as its reason, checked through the
    Prefect API (the worker then runs it like any retrain)."""
    from ferry.data import recipes

    plots = recipes.build("rotten-tomatoes-plots", project / "incoming" / "plots.csv")
    sets = [a for o in [*overrides, "monitor.on_drift=retrain"] for a in ("--set", o)]
    scored = subprocess.run([str(Path(sys.executable).with_name("ferry")), "predict",
                             str(plots), "--model", "tiny@challenger", *sets], cwd=project,
                            env=env, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    assert "drift: DRIFT: MMD^2" in scored.stdout, scored.stdout
    version = re.search(r"flow run 'drift-tiny-v(\d+)'", scored.stdout)
    assert version, scored.stdout
    run = _retrain_run(running, version.group(0).split("'")[1], final=False)
    assert run.parameters["overrides"] == [*overrides, "monitor.on_drift=retrain"]
    assert "against tiny v" in run.parameters["reason"] and \
        "DRIFT: MMD^2" in run.parameters["reason"] and "plots.csv" in run.parameters["reason"]
    _cancel(running, run)  # the stack serves the next test: no retrain left to run there


def _cancel(running, run) -> None:
    """Cancel a flow run: at once when no worker has it yet, else through its worker."""
    from prefect.states import Cancelled, Cancelling

    with _prefect_api(running) as client:
        state = client.read_flow_run(run.id).state
        if state is not None and not state.is_final():
            client.set_flow_run_state(run.id, Cancelling() if state.is_running()
                                      else Cancelled(), force=True)


def _retrain_run(running, flow_run_name: str, timeout: float = 480, final: bool = True):
    """The retrain deployment's flow run of that name (once it is final, unless ``final`` is
    False: then as soon as it exists)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterName,
    )

    deadline = time.monotonic() + timeout
    with _prefect_api(running) as client:
        while True:
            (run,) = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[flow_run_name])),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(
                    any_=["nightly-retrain"])))
            if not final or run.state.is_final() or time.monotonic() > deadline:
                return run
            time.sleep(2)


def test_ferry_schedule_serves_the_deployments_and_stops_cleanly(tmp_path):
    """One machine: `ferry schedule` = local server (API and UI) + deployments + worker;
    SIGTERM (or Ctrl-C) stops all of it."""
    import signal
    import time

    project = tmp_path / "sched"
    for part in ("flows", "tasks"):
        shutil.copytree(REPO / part, project / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    port = stack_mod.free_port()
    log = tmp_path / "schedule.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("ferry")), "schedule",
                                 "--port", str(port)], cwd=project, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "worker of pool 'ferry' running" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(1)
        env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
               "PREFECT_HOME": str(tmp_path / "cli-home"), "COLUMNS": "250"}
        listed = _prefect(["deployment", "ls"], env, project).stdout
        assert "ferry-retrain/nightly-retrain" in listed and "weekly-sweep" in listed
        _serves_the_ui(f"http://127.0.0.1:{port}")
        state = stack_mod.load(project / ".ferry" / "schedule")
        assert state is not None and set(state.pids) == {"prefect", "worker"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert all(not stack_mod._alive(pid) for pid in state.pids.values())


def _serves_the_ui(url: str) -> None:
    """The UI's page (not {"detail":"Not Found"}), pointed at this server's own API port."""
    import urllib.request

    html = urllib.request.Request(f"{url}/", headers={"Accept": "text/html"})
    with urllib.request.urlopen(html, timeout=10) as response:
        assert response.read().lstrip().startswith(b"<!DOCTYPE html>")
    with urllib.request.urlopen(f"{url}/ui-settings", timeout=10) as response:
        settings = json.loads(response.read())
    assert settings["api_url"] == f"{url}/api" and settings["default_ui"] == "v1"
