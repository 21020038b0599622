"""Service processes: start one in its own session, wait until it answers, stop its group.

Every service runs in its own session (process group) so that stopping it also stops the
children it forks (uvicorn workers, gunicorn, flow-run subprocesses): nothing is left behind
holding a port or a database.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from ferry.stack.state import Stack, StackError, save


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def wait_until(check: Callable[[], bool], what: str, log: Path, timeout: float = 120) -> None:
    """Poll ``check``; on timeout the error carries the tail of the service's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
    raise StackError(f"{what} did not come up within {timeout:.0f} s; log {log}:\n{tail}")


def http_answers(url: str) -> bool:
    """The server answers at all (any status: a 503 "no model yet" is an answer too)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def spawn(stack: Stack, name: str, cmd: list[str], env: dict[str, str],
          cwd: Path | None = None) -> None:
    """Start a service in its own session (process group), logging to its folder (and
    running there unless ``cwd``); its pid is recorded at once."""
    folder = Path(stack.home) / name
    folder.mkdir(parents=True, exist_ok=True)
    log = (folder / "log.txt").open("ab")
    proc = subprocess.Popen(cmd, cwd=cwd or folder, env={**os.environ, **env}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    stack.pids[name] = proc.pid
    save(stack)


def alive(pid: int) -> bool:
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


def kill_group(pid: int, timeout: float) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after ``timeout``."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    with _gone_or_not_ours():
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.2)
    with _gone_or_not_ours():
        os.killpg(pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    with contextlib.suppress(ChildProcessError):  # reap our own exited children (zombies)
        while os.waitpid(-pgid, os.WNOHANG)[0]:
            pass
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _gone_or_not_ours():
    return contextlib.suppress(ProcessLookupError, PermissionError)
