"""The team stack without Docker: Postgres, MLflow server, Prefect server and a worker as real
processes on loopback; deployments from prefect.yaml, triggered through the Prefect API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ferry import stack as stack_mod
from tests.conftest import review_rows, tiny_overrides, write_csv

REPO = Path(__file__).parents[2]


def _prefect(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("prefect")), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture
def stack(tmp_path):
    """A project folder (flows, tasks, prefect.yaml) with its own running stack."""
    project = tmp_path / "proj"
    for part in ("flows", "tasks"):
        shutil.copytree(REPO / part, project / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "prefect.yaml", project / "prefect.yaml")
    ports = stack_mod.Ports(*(stack_mod.free_port() for _ in range(3)))
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
    from mlflow.tracking import MlflowClient

    project, running = stack
    for key, value in running.client_env().items():  # this process's MLflow client logs in
        monkeypatch.setenv(key, value)
    env = {**os.environ, **running.client_env(), "FERRY_PROJECT_DIR": str(project),
           "PREFECT_HOME": str(tmp_path / "cli-home"), "COLUMNS": "250"}
    stack_mod.deploy(running.client_env(), project)
    listed = _prefect(["deployment", "ls"], env, project)
    assert "nightly-retrain" in listed.stdout and "weekly-sweep" in listed.stdout
    overrides = [*tiny_overrides(tiny_bert, write_csv(project / "good.csv", review_rows(120))),
                 "promotion.min_accuracy=0.0", "promotion.min_macro_f1=0.0"]
    params = json.dumps({"config": None, "overrides": overrides})
    trigger = ["deployment", "run", "ferry-retrain/nightly-retrain", "--params", params,
               "--watch", "--watch-timeout", "500"]
    first = _prefect(trigger, env, project)
    log = Path(running.home) / "worker" / "log.txt"
    assert first.returncode == 0, first.stdout[-2000:] + log.read_text(errors="replace")[-4000:]
    mc = MlflowClient(tracking_uri=running.mlflow_uri, registry_uri=running.mlflow_uri)
    champion = mc.get_model_version_by_alias("tiny", "champion")
    assert champion.version == "1" and champion.tags["data.md5"]
    assert champion.tags["promotion.decision"] == "promote"
    second = _prefect(trigger, env, project)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert [v.version for v in mc.search_model_versions("name='tiny'")] == ["1"]
    worker_log = (Path(running.home) / "worker" / "log.txt").read_text(errors="replace")
    assert f"data version {champion.tags['data.md5']} is the one tiny v1 (@champion) " \
        "was trained on: skipping training" in worker_log
    _unauthenticated_clients_are_refused(running, project, monkeypatch)


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
    from prefect.client.orchestration import get_client

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
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    stack_env = running.client_env()
    with temporary_settings({PREFECT_API_URL: stack_env["PREFECT_API_URL"],
                             PREFECT_API_AUTH_STRING: stack_env["PREFECT_API_AUTH_STRING"]}), \
            get_client(sync_client=True) as client:
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


def test_ferry_schedule_serves_the_deployments_and_stops_cleanly(tmp_path):
    """One machine: `ferry schedule` = local server + deployments + worker; SIGTERM (or
    Ctrl-C) stops all of it."""
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
        state = stack_mod.load(project / ".ferry" / "schedule")
        assert state is not None and set(state.pids) == {"prefect", "worker"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert all(not stack_mod._alive(pid) for pid in state.pids.values())
