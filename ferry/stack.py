"""The team stack without Docker: Postgres, an MLflow server, a Prefect server and a worker,
as processes on loopback, each with its own data directory under ``.ferry/stack/``.

The same services, ports and environment as ``docker/compose.yaml``, so what a test proves here
holds for the containers. ``up`` starts them in dependency order and waits until each answers;
``down`` stops them by the process ids recorded in ``stack.json`` (whole process groups, so no
server's children are left behind) and Postgres with ``pg_ctl stop``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ferry.errors import FerryError

STATE = "stack.json"
CREDENTIALS = "credentials.json"
POOL = "ferry"


class StackError(FerryError):
    """A service of the stack did not start, or the stack is already up / not up."""


@dataclass
class Ports:
    """Loopback ports (compose publishes the same ones on 127.0.0.1)."""

    postgres: int = 55432
    mlflow: int = 5000
    prefect: int = 4200


@dataclass
class Stack:
    """Where a running stack lives and how to reach it."""

    home: str
    ports: Ports = field(default_factory=Ports)
    pids: dict[str, int] = field(default_factory=dict)
    postgres_data: str = ""

    @property
    def mlflow_uri(self) -> str:
        return f"http://127.0.0.1:{self.ports.mlflow}"

    @property
    def prefect_api(self) -> str:
        return f"http://127.0.0.1:{self.ports.prefect}/api"

    def database(self, name: str, driver: str = "postgresql") -> str:
        return f"{driver}://ferry@127.0.0.1:{self.ports.postgres}/{name}"

    def client_env(self) -> dict[str, str]:
        """What a process needs to use this stack (the worker gets exactly this): URLs and
        the credentials from the stack's own credentials file (never from the repo)."""
        creds = credentials(Path(self.home))
        return {"MLFLOW_TRACKING_URI": self.mlflow_uri, "PREFECT_API_URL": self.prefect_api,
                "MLFLOW_TRACKING_USERNAME": creds["mlflow_user"],
                "MLFLOW_TRACKING_PASSWORD": creds["mlflow_password"],
                "PREFECT_API_AUTH_STRING": creds["prefect_auth"]}


def credentials(home: Path) -> dict[str, str]:
    """The stack's credentials, generated on first use into ``home/credentials.json``
    (mode 600, under the git-ignored .ferry/): MLflow's basic-auth admin and Prefect's API
    auth string. Set FERRY_MLFLOW_PASSWORD / FERRY_PREFECT_PASSWORD to choose them."""
    import json
    import secrets

    path = home / CREDENTIALS
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    home.mkdir(parents=True, exist_ok=True)
    creds = {"mlflow_user": "admin",
             "mlflow_password": os.environ.get("FERRY_MLFLOW_PASSWORD") or
             secrets.token_urlsafe(18),
             "prefect_auth": "ferry:" + (os.environ.get("FERRY_PREFECT_PASSWORD") or
                                         secrets.token_urlsafe(18))}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(creds, handle)
    return creds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bin(name: str) -> str:
    """A binary of the newest Debian PostgreSQL (``apt-get install postgresql``)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if found:
        return str(found[-1])
    if shutil.which(name):
        return str(shutil.which(name))
    raise StackError(f"PostgreSQL's {name} not found: apt-get install postgresql "
                     "(make setup does this)")


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _wait(check, what: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
    raise StackError(f"{what} did not come up within {timeout:.0f} s; log {log}:\n{tail}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _spawn(stack: Stack, name: str, cmd: list[str], env: dict[str, str]) -> None:
    """Start a service in its own session (process group), logging to its folder."""
    folder = Path(stack.home) / name
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "log.txt").open("ab")
    proc = subprocess.Popen(cmd, cwd=folder, env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    stack.pids[name] = proc.pid
    _save(stack)


def _save(stack: Stack) -> None:
    path = Path(stack.home) / STATE
    path.write_text(json.dumps(asdict(stack), indent=2), encoding="utf-8")


def load(home: Path) -> Stack | None:
    path = home / STATE
    if not path.is_file():
        return None
    raw = json.loads(path.read_text(encoding="utf-8"))
    return Stack(home=raw["home"], ports=Ports(**raw["ports"]), pids=raw["pids"],
                 postgres_data=raw.get("postgres_data", ""))


def up(home: Path, ports: Ports | None = None, worker_cwd: Path | None = None) -> Stack:
    """Start Postgres, MLflow, the Prefect server and a process worker; wait for each."""
    home = home.resolve()
    if (running := load(home)) and any(_alive(p) for p in running.pids.values()):
        raise StackError(f"a stack is already running from {home} ({STATE}); "
                         "`ferry stack down` first")
    home.mkdir(parents=True, exist_ok=True)
    stack = Stack(home=str(home), ports=ports or Ports())
    _save(stack)
    try:
        _postgres(stack)
        _mlflow(stack)
        _prefect(stack)
        _worker(stack, worker_cwd or Path.cwd())
    except BaseException:
        down(home)
        raise
    return stack


def _pg_folder(stack: Stack) -> Path:
    """Postgres's folder: in the stack home, or (as root, where the server runs as the
    ``postgres`` user, who may not traverse the home's parents) under /var/tmp, keyed by it."""
    if os.geteuid() != 0:
        return Path(stack.home) / "postgres"
    import hashlib

    key = hashlib.sha256(stack.home.encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"ferry-postgres-{key}"


def _run_pg(cmd: list[str], what: str) -> None:
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"postgres {what} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def _postgres(stack: Stack) -> None:
    folder = _pg_folder(stack)
    data, log = folder / "data", folder / "log.txt"
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    stack.postgres_data = str(data)
    if not (data / "PG_VERSION").is_file():
        _run_pg([_pg_bin("initdb"), "-D", str(data), "-U", "ferry", "--auth=trust", "-E",
                 "UTF8"], "initdb")
    _run_pg([_pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o",
             f"-p {stack.ports.postgres} -h 127.0.0.1 -k {folder}", "start"], "start")
    stack.pids["postgres"] = int((data / "postmaster.pid").read_text().split()[0])
    _save(stack)
    for name in ("mlflow", "mlflow_auth", "prefect"):
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(stack.ports.postgres),
                        "-U", "ferry", name], capture_output=True)  # exists already: fine


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
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
           "--port", str(stack.ports.mlflow), "--workers", "1", "--app-name", "basic-auth",
           "--backend-store-uri", stack.database("mlflow"),
           "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts"]
    _spawn(stack, "mlflow", cmd, {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_AUTH_CONFIG_PATH": str(auth),
        "MLFLOW_AUTH_ADMIN_PASSWORD": credentials(Path(stack.home))["mlflow_password"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": credentials(Path(stack.home))["mlflow_password"]})
    _wait(lambda: _http_ok(f"{stack.mlflow_uri}/health"), "mlflow server", folder / "log.txt")


def _prefect(stack: Stack) -> None:
    folder = Path(stack.home) / "prefect"
    cmd = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
           "127.0.0.1", "--port", str(stack.ports.prefect)]
    _spawn(stack, "prefect", cmd, {
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": stack.database("prefect",
                                                              "postgresql+asyncpg"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_API_AUTH_STRING": credentials(Path(stack.home))["prefect_auth"]})
    _wait(lambda: _http_ok(f"{stack.prefect_api}/health"), "prefect server",
          folder / "log.txt", timeout=180)


def _worker(stack: Stack, cwd: Path) -> None:
    folder = Path(stack.home) / "worker"
    cmd = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL,
           "--type", "process"]
    _spawn(stack, "worker", cmd, {**stack.client_env(), "PREFECT_HOME": str(folder / "home"),
                                  "FERRY_PROJECT_DIR": str(cwd.resolve())})
    _wait(lambda: _worker_ready(stack), "prefect worker", folder / "log.txt")


def _worker_ready(stack: Stack) -> bool:
    log = Path(stack.home) / "worker" / "log.txt"
    return log.is_file() and "started!" in log.read_text(errors="replace")


def _alive(pid: int) -> bool:
    import contextlib

    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False  # it was our child and has exited
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down(home: Path, timeout: float = 10) -> list[str]:
    """Stop every service of the stack at ``home``; returns the names stopped."""
    stack = load(home.resolve())
    if stack is None:
        return []
    stopped = []
    for name in ("worker", "prefect", "mlflow"):
        pid = stack.pids.get(name)
        if pid and _alive(pid):
            _kill_group(pid, timeout)
            stopped.append(name)
    if stack.pids.get("postgres") and _alive(stack.pids["postgres"]):
        subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", stack.postgres_data, "-m", "fast",
                                     "-w", "stop"]), capture_output=True)
        if _alive(stack.pids["postgres"]):
            _kill_group(stack.pids["postgres"], timeout)
        stopped.append("postgres")
    stack.pids = {}
    _save(stack)
    return stopped


def _kill_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with _suppress():
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.2)
    with _suppress():
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    import contextlib

    with contextlib.suppress(ChildProcessError):  # reap our own exited children (zombies)
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _suppress():
    import contextlib

    return contextlib.suppress(ProcessLookupError, PermissionError)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def deploy(stack_env: dict[str, str], project: Path) -> subprocess.CompletedProcess:
    """``prefect deploy --all`` from the project's prefect.yaml against the stack's server
    (creating the process work pool first, so deployments never point at a missing pool)."""
    env = {**os.environ, **stack_env, "FERRY_PROJECT_DIR": str(project.resolve())}
    prefect = str(Path(sys.executable).with_name("prefect"))
    subprocess.run([prefect, "work-pool", "create", POOL, "--type", "process"], cwd=project,
                   env=env, capture_output=True, timeout=120)  # exists already: fine
    proc = subprocess.run([str(Path(sys.executable).with_name("prefect")), "--no-prompt",
                           "deploy", "--all"], cwd=project, env=env, capture_output=True,
                          text=True, timeout=300)
    if proc.returncode != 0:
        raise StackError(f"prefect deploy --all failed in {project}:\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-3000:]}")
    return proc


def schedule(project: Path, port: int = 4200) -> None:
    """One machine: a local Prefect server on 127.0.0.1, the deployments of prefect.yaml, and
    a worker (log: .ferry/schedule/worker/log.txt); Ctrl-C stops the worker and the server."""
    home = (project / ".ferry" / "schedule").resolve()
    stack = Stack(home=str(home), ports=Ports(prefect=port))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    home.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("prefect")), "server", "start", "--host",
           "127.0.0.1", "--port", str(port)]
    _spawn(stack, "prefect", cmd, {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    try:
        _wait(lambda: _http_ok(f"{stack.prefect_api}/health"), "prefect server",
              home / "prefect" / "log.txt", timeout=180)
        env = {"PREFECT_API_URL": stack.prefect_api}
        deploy(env, project)
        print(f"Prefect server {stack.prefect_api} (UI on port {port}); deployments of "
              f"prefect.yaml registered; worker of pool {POOL!r} running (Ctrl-C stops all)",
              flush=True)
        _spawn(stack, "worker", [str(Path(sys.executable).with_name("prefect")), "worker",
                                 "start", "--pool", POOL, "--type", "process"],
               {**env, "FERRY_PROJECT_DIR": str(project.resolve())})
        os.waitpid(stack.pids["worker"], 0)
    except KeyboardInterrupt:
        pass
    finally:  # the worker and the server run in their own sessions: stop both here
        for name in ("worker", "prefect"):
            if name in stack.pids:
                _kill_group(stack.pids[name], 15)
