"""Postgres for the stack: Debian's server binaries, one data directory per stack, the
databases MLflow, MLflow's auth app and Prefect use.

initdb and postgres refuse to run as root, so as root they run as the ``postgres`` user,
with their data directory outside the stack home (whose parents that user may not traverse).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ferry.stack.processes import alive, kill_group
from ferry.stack.state import Stack, StackError, save

DATABASES = ("mlflow", "mlflow_auth", "prefect", "optuna")  # optuna: ferry tune's studies


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
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _pg_folder(stack: Stack) -> Path:
    """Postgres's folder: in the stack home, or (as root) under /var/tmp, keyed by it."""
    if os.geteuid() != 0:
        return Path(stack.home) / "postgres"
    key = hashlib.sha256(stack.home.encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"ferry-postgres-{key}"


def _run_pg(cmd: list[str], what: str) -> None:
    proc = subprocess.run(_as_postgres(cmd), capture_output=True, text=True)
    if proc.returncode != 0:
        raise StackError(f"postgres {what} failed: {proc.stderr.strip() or proc.stdout.strip()}")


def start_postgres(stack: Stack) -> None:
    """initdb on first use, start (``pg_ctl -w`` waits until it accepts connections), and
    create the databases (createdb fails harmlessly when one exists already)."""
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
    save(stack)
    for name in DATABASES:
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(stack.ports.postgres),
                        "-U", "ferry", name], capture_output=True)


def stop_postgres(stack: Stack, timeout: float) -> bool:
    """``pg_ctl stop -m fast`` (a clean shutdown), its process group killed only if that
    fails; True when it was running."""
    pid = stack.pids.get("postgres")
    if not pid or not alive(pid):
        return False
    subprocess.run(_as_postgres([_pg_bin("pg_ctl"), "-D", stack.postgres_data, "-m", "fast",
                                 "-w", "stop"]), capture_output=True)
    if alive(pid):
        kill_group(pid, timeout)
    return True
