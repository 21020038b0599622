"""docker/compose.yaml and `ferry stack up` describe the same stack: services, ports,
databases, worker pool and client environment. A change to one must show up in the other."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ferry import stack

DOCKER = Path(__file__).parents[2] / "docker"


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_has_the_services_and_ports_of_the_local_stack():
    services = _compose()["services"]
    assert set(services) == {"postgres", "mlflow", "prefect-server", "prefect-worker", "serve"}
    ports = stack.Ports()
    published = {name: s.get("ports", []) for name, s in services.items()}
    assert published["postgres"] == [f"127.0.0.1:{ports.postgres}:5432"]
    assert published["mlflow"] == [f"127.0.0.1:{ports.mlflow}:{ports.mlflow}"]
    assert published["prefect-server"] == [f"127.0.0.1:{ports.prefect}:{ports.prefect}"]
    assert published["serve"] == [f"127.0.0.1:{ports.serve}:{ports.serve}"]
    assert all(p.startswith("127.0.0.1:") for ps in published.values() for p in ps)


def test_compose_uses_the_same_databases_pool_and_client_environment():
    services = _compose()["services"]
    local = stack.Stack(home="/x", ports=stack.Ports())
    mlflow_cmd = services["mlflow"]["command"]
    store = mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1]
    assert store.rsplit("/", 1)[1] == local.database("mlflow").rsplit("/", 1)[1] == "mlflow"
    assert "--serve-artifacts" in mlflow_cmd and "--artifacts-destination" in mlflow_cmd
    prefect_db = services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert prefect_db.startswith("postgresql+asyncpg://ferry@") and prefect_db.endswith("/prefect")
    worker = services["prefect-worker"]
    assert worker["command"][worker["command"].index("--pool") + 1] == stack.POOL
    assert set(local.client_env()) <= set(worker["environment"])
    assert "FERRY_PROJECT_DIR" in worker["environment"]
    init = (DOCKER / "postgres-init.sql").read_text(encoding="utf-8")
    assert "CREATE DATABASE mlflow" in init and "CREATE DATABASE prefect" in init


def test_prefect_yaml_deploys_to_the_stack_pool():
    spec = yaml.safe_load((DOCKER.parent / "prefect.yaml").read_text(encoding="utf-8"))
    names = {d["name"]: d for d in spec["deployments"]}
    assert set(names) == {"nightly-retrain", "weekly-sweep", "sweep-member", "nightly-score",
                          "tune-trial"}
    assert all(d["work_pool"]["name"] == stack.POOL for d in names.values())
    assert names["nightly-retrain"]["entrypoint"] == "flows/retrain.py:retrain"
    assert names["nightly-score"]["entrypoint"] == "flows/score.py:score"
    scheduled = [names["nightly-retrain"], names["weekly-sweep"], names["nightly-score"]]
    assert all(d["schedules"][0]["cron"] for d in scheduled)


def test_both_stacks_require_credentials_from_the_environment():
    services = _compose()["services"]
    assert "--app-name" in services["mlflow"]["command"]
    assert services["mlflow"]["command"][services["mlflow"]["command"].index("--app-name") + 1] \
        == "basic-auth"
    env = services["mlflow"]["environment"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${FERRY_MLFLOW_PASSWORD:?")
    assert services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"] \
        .startswith("ferry:${FERRY_PREFECT_PASSWORD:?")
    worker = services["prefect-worker"]["environment"]
    assert worker["MLFLOW_TRACKING_PASSWORD"].startswith("${FERRY_MLFLOW_PASSWORD")
    ini = (DOCKER / "mlflow-basic-auth.ini").read_text(encoding="utf-8")
    assert "mlflow_auth" in ini and "admin_password" not in ini.replace("# ", "")
    init = (DOCKER / "postgres-init.sql").read_text(encoding="utf-8")
    assert "CREATE DATABASE mlflow_auth;" in init


def test_local_stack_credentials_are_generated_private_and_handed_to_clients(tmp_path):
    local = stack.Stack(home=str(tmp_path), ports=stack.Ports())
    env = local.client_env()
    creds = stack.credentials(tmp_path)
    assert (tmp_path / stack.CREDENTIALS).stat().st_mode & 0o777 == 0o600
    assert env["MLFLOW_TRACKING_PASSWORD"] == creds["mlflow_password"]
    assert env["PREFECT_API_AUTH_STRING"] == creds["prefect_auth"]
    assert len(creds["mlflow_password"]) >= 20 and stack.credentials(tmp_path) == creds


def test_both_stacks_keep_the_tune_studies_in_postgres(tmp_path):
    """`ferry tune`'s studies live in database optuna of the stack's Postgres: created by
    both stacks, and named to every worker and client by FERRY_TUNE_STORAGE."""
    from ferry.stack.postgres import DATABASES

    init = (DOCKER / "postgres-init.sql").read_text(encoding="utf-8")
    assert set(DATABASES) == set(re.findall(r"CREATE DATABASE (\w+);", init))
    assert "optuna" in DATABASES
    services = _compose()["services"]
    mlflow_cmd = services["mlflow"]["command"]
    mlflow_store = mlflow_cmd[mlflow_cmd.index("--backend-store-uri") + 1]
    storage = services["prefect-worker"]["environment"]["FERRY_TUNE_STORAGE"]
    assert storage == mlflow_store.rsplit("/", 1)[0] + "/optuna"  # same server and user
    local = stack.Stack(home=str(tmp_path), ports=stack.Ports())
    assert local.client_env()["FERRY_TUNE_STORAGE"] == local.database("optuna") == \
        "postgresql://ferry@127.0.0.1:55432/optuna"
