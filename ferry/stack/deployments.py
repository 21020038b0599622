"""The deployments of prefect.yaml on a server: ``deploy`` (against any stack) and
``schedule`` (one machine: a local server, the deployments and a worker, until Ctrl-C).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ferry.stack.processes import kill_group
from ferry.stack.services import start_prefect_server, start_worker, venv_script
from ferry.stack.state import POOL, Ports, Stack, StackError


def deploy(stack_env: dict[str, str], project: Path) -> subprocess.CompletedProcess:
    """``prefect deploy --all`` from the project's prefect.yaml against the stack's server
    (creating the process work pool first, so deployments never point at a missing pool)."""
    env = {**os.environ, **stack_env, "FERRY_PROJECT_DIR": str(project.resolve())}
    prefect = venv_script("prefect")
    subprocess.run([prefect, "work-pool", "create", POOL, "--type", "process"], cwd=project,
                   env=env, capture_output=True, timeout=120)  # exists already: fine
    proc = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise StackError(f"prefect deploy --all failed in {project}:\n{proc.stdout[-3000:]}"
                         f"{proc.stderr[-3000:]}")
    return proc


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def schedule(project: Path, port: int = 4200) -> None:
    """One machine: a local Prefect server on 127.0.0.1 (API and UI), the deployments of
    prefect.yaml, and a worker (log: .ferry/schedule/worker/log.txt); Ctrl-C or SIGTERM
    stops the worker and the server."""
    home = (project / ".ferry" / "schedule").resolve()
    stack = Stack(home=str(home), ports=Ports(prefect=port))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as cleanly as Ctrl-C
    home.mkdir(parents=True, exist_ok=True)
    try:
        start_prefect_server(stack, {})
        env = {"PREFECT_API_URL": stack.prefect_api}
        deploy(env, project)
        print(f"Prefect server {stack.prefect_api} (UI {stack.prefect_url}); deployments of "
              f"prefect.yaml registered; worker of pool {POOL!r} running (Ctrl-C stops all)",
              flush=True)
        start_worker(stack, {**env, "FERRY_PROJECT_DIR": str(project.resolve())})
        os.waitpid(stack.pids["worker"], 0)
    except KeyboardInterrupt:
        pass
    finally:  # the worker and the server run in their own sessions: stop both here
        for name in ("worker", "prefect"):
            if name in stack.pids:
                kill_group(stack.pids[name], 15)
