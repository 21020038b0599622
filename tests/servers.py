"""Real servers and concurrent flow runs for the fault tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ferry import stack


class Server:
    """``mlflow server`` on a SQLite store with served artifacts; stoppable and restartable
    on the same port and store."""

    def __init__(self, home: Path) -> None:
        self.home, self.port = home, stack.free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1", "--backend-store-uri",
               f"sqlite:///{self.home / 'mlflow.db'}", "--serve-artifacts",
               "--artifacts-destination", str(self.home / "artifacts")]
        log = (self.home / "log.txt").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True,
                                     env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION":
                                          "false"})
        deadline = time.monotonic() + 120
        while not stack._http_ok(f"{self.uri}/health"):
            assert self.proc.poll() is None and time.monotonic() < deadline, \
                (self.home / "log.txt").read_text(errors="replace")[-3000:]
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def in_thread(flow: Callable, *args) -> tuple[threading.Thread, dict]:
    """Start ``flow(*args)`` in a thread; its result or exception lands in the dict."""
    out: dict = {}

    def work():
        try:
            out["result"] = flow(*args)
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=work, daemon=True)  # a hung flow must not hang the exit
    thread.start()
    return thread, out


def join_all(started: list[tuple[threading.Thread, dict]], seconds: float) -> list[dict]:
    """Wait at most ``seconds`` in all for threads from ``in_thread``; their outputs, each
    with an ``error`` saying so when its thread did not finish in time."""
    deadline = time.monotonic() + seconds
    for thread, out in started:
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            out.setdefault("error", TimeoutError(f"{thread.name} still running after "
                                                 f"{seconds:.0f} s"))
    return [out for _, out in started]
