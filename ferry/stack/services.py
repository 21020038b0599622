"""The stack's services, started in dependency order (Postgres, MLflow, the Prefect server,
a worker, ``ferry serve``) and stopped in reverse, each by the process id recorded in
``stack.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ferry.stack.postgres import start_postgres, stop_postgres
from ferry.stack.processes import alive, http_answers, http_ok, kill_group, spawn, wait_until
from ferry.stack.state import POOL, STATE, Ports, Stack, StackError, credentials, load, save


def venv_script(name: str) -> str:
    """A console script of this environment (mlflow, prefect), whatever PATH says."""
    return str(Path(sys.executable).with_name(name))


def up(home: Path, ports: Ports | None = None, worker_cwd: Path | None = None) -> Stack:
    """Start Postgres, MLflow, the Prefect server, a process worker and ``ferry serve``;
    wait for each. Whatever started is stopped again if a later service fails."""
    home = home.resolve()
    if (running := load(home)) and any(alive(p) for p in running.pids.values()):
        raise StackError(f"a stack is already running from {home} ({STATE}); "
                         "`ferry stack down` first")
    home.mkdir(parents=True, exist_ok=True)
    stack = Stack(home=str(home), ports=ports or Ports())
    save(stack)
    try:
        start_postgres(stack)
        _mlflow(stack)
        start_prefect_server(stack, {
            "PREFECT_HOME": str(home / "prefect" / "home"),
            "PREFECT_API_DATABASE_CONNECTION_URL": stack.database("prefect",
                                                                  "postgresql+asyncpg"),
            "PREFECT_SERVER_API_AUTH_STRING": credentials(home)["prefect_auth"]})
        _worker(stack, worker_cwd or Path.cwd())
        _serve(stack, worker_cwd or Path.cwd())
    except BaseException:
        down(home)
        raise
    return stack


def down(home: Path, timeout: float = 10) -> list[str]:
    """Stop every service of the stack at ``home``; returns the names stopped."""
    stack = load(home.resolve())
    if stack is None:
        return []
    stopped = []
    for name in ("serve", "worker", "prefect", "mlflow"):
        pid = stack.pids.get(name)
        if pid and alive(pid):
            kill_group(pid, timeout)
            stopped.append(name)
    if stop_postgres(stack, timeout):
        stopped.append("postgres")
    stack.pids = {}
    save(stack)
    return stopped


def _mlflow(stack: Stack) -> None:
    """MLflow with its basic-auth app: every request needs the admin (or a user) login."""
    folder = Path(stack.home) / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    auth = folder / "basic_auth.ini"
    auth.write_text("[mlflow]\ndefault_permission = READ\n"
                    f"database_uri = {stack.database('mlflow_auth')}\n"
                    "admin_username = admin\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth"
                    "\nauth_cache_ttl_seconds = 60\n",  # PBKDF2 once a minute, not per request
                    encoding="utf-8")
    cmd = [venv_script("mlflow"), "server", "--host", "127.0.0.1",
           "--port", str(stack.ports.mlflow), "--workers", "1", "--app-name", "basic-auth",
           "--backend-store-uri", stack.database("mlflow"),
           "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts"]
    password = credentials(Path(stack.home))["mlflow_password"]
    spawn(stack, "mlflow", cmd, {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password, "MLFLOW_FLASK_SERVER_SECRET_KEY": password})
    wait_until(lambda: http_ok(f"{stack.mlflow_uri}/health"), "mlflow server",
               folder / "log.txt")


def prefect_ui_env(stack: Stack) -> dict[str, str]:
    """Serve the Prefect UI that ships inside the prefect package, under the same auth
    string as the API (the UI's login asks for it and sends it as basic auth).

    - The classic UI (``prefect/server/ui``) is the default at ``/``: Prefect 3.8 would
      redirect ``/`` to the new ``/v2`` UI, while the links Prefect prints ("View at
      .../runs/flow-run/<id>") open the classic one; pinned, both land in the same UI.
      ``/v2`` stays one click away ("Switch to V2 UI").
    - The UI calls the API at the URL it is given, not the one it was loaded from: without
      it, it calls port 4200 whatever ``--port`` says.
    - The UI's files are copied into the stack's folder, not into the installed package
      (which may be read-only or shared by several servers).
    """
    return {"PREFECT_SERVER_UI_ENABLED": "true", "PREFECT_SERVER_UI_V2_ENABLED": "false",
            "PREFECT_SERVER_UI_API_URL": stack.prefect_api,
            "PREFECT_SERVER_UI_STATIC_DIRECTORY": str(Path(stack.home) / "prefect" / "ui"),
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false"}


def start_prefect_server(stack: Stack, env: dict[str, str]) -> None:
    """``prefect server start`` on loopback with its UI; waits until the API is healthy."""
    cmd = [venv_script("prefect"), "server", "start", "--host", "127.0.0.1", "--port",
           str(stack.ports.prefect)]
    spawn(stack, "prefect", cmd, {"PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                                  **prefect_ui_env(stack), **env})
    wait_until(lambda: http_ok(f"{stack.prefect_api}/health"), "prefect server",
               Path(stack.home) / "prefect" / "log.txt", timeout=180)


def start_worker(stack: Stack, env: dict[str, str]) -> None:
    """A process worker of the pool: it runs each flow run as a subprocess in the project."""
    cmd = [venv_script("prefect"), "worker", "start", "--pool", POOL, "--type", "process"]
    spawn(stack, "worker", cmd, env)


def _worker(stack: Stack, cwd: Path) -> None:
    folder = Path(stack.home) / "worker"
    start_worker(stack, {**stack.client_env(), "PREFECT_HOME": str(folder / "home"),
                         "FERRY_PROJECT_DIR": str(cwd.resolve())})
    wait_until(lambda: _worker_ready(stack), "prefect worker", folder / "log.txt")


def _worker_ready(stack: Stack) -> bool:
    log = Path(stack.home) / "worker" / "log.txt"
    return log.is_file() and "started!" in log.read_text(errors="replace")


def _serve(stack: Stack, project: Path) -> None:
    """``ferry serve --wait`` in the project (its config names the model): it follows
    ``@champion`` in the stack's MLflow and answers 503 until there is one, so the stack
    can come up before the first promotion."""
    project = project.resolve()
    config = project / "configs" / "default.yaml"
    cmd = [venv_script("ferry"), "serve", "--wait", "--host", "127.0.0.1", "--port",
           str(stack.ports.serve), *(["-c", str(config)] if config.is_file() else [])]
    creds = stack.client_env()
    env = {k: creds[k] for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                 "MLFLOW_TRACKING_PASSWORD")}
    spawn(stack, "serve", cmd, env, cwd=project)
    wait_until(lambda: http_answers(f"{stack.serve_url}/health"), "ferry serve",
               Path(stack.home) / "serve" / "log.txt")
