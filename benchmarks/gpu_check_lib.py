"""The machinery of ``benchmarks/gpu_check.py``: its throwaway project, subprocesses with
timeouts (their whole process group stopped: a flow leaves a Prefect server and torchrun
workers behind it), GPU memory seen through NVML, and the fast-path receipts of a training.

Kept apart so that the check's own file reads as the list of steps and what each asserts.
Standard library only at import time: the check must refuse a CPU machine before any work.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# What a fresh clone holds that a run reads (the library itself is the installed checkout).
PROJECT_FILES = ("configs", "data.dvc", ".dvc/config", ".dvcignore")
# The user's own servers must not receive the check's runs: each command starts its own.
FOREIGN = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_API_URL")


class Failed(Exception):
    """A step's assertion, said in one line for the summary table."""


def need(condition: object, message: str) -> None:
    """An assertion that survives ``python -O`` and reads as the table's figure."""
    if not condition:
        raise Failed(message)


def make_project(repo: Path, dest: Path) -> Path:
    """A project as a fresh clone starts (test_real_data.py does the same): no data/, so the
    flow rebuilds it from its recipes and proves it matches data.dvc."""
    for rel in PROJECT_FILES:
        source, target = repo / rel, dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        elif source.is_file():
            shutil.copy2(source, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    return dest


def http(url: str, body: object | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """(status, JSON) of a GET (or a POST of ``body``); status 0 when nothing answers."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, OSError):
        return 0, None


def runtime(folder: Path, role: str, compiled: bool = False, packed: bool = False) -> str:
    """Assert every ``role`` training under ``folder`` took the GPU fast path (its
    complete.json ``runtime``); the figures of the first one."""
    done = Check.completions(folder, role)
    need(done, f"no {role} training finished under {folder.name}")
    for record in done:
        rt = record.get("runtime") or {}
        need(rt, f"{role} complete.json has no runtime")
        need(str(rt.get("device", "")).startswith("cuda"), f"{role} device {rt.get('device')}")
        need(rt.get("autocast") == "bf16", f"{role} autocast {rt.get('autocast')}")
        need(rt.get("resident") is True, f"{role} data not resident ({rt.get('resident')})")
        need(rt.get("compiled") or not compiled, f"{role} not compiled")
        need(rt.get("packed") or not packed, f"{role} not packed")
    rt, history = done[0]["runtime"], done[0].get("history") or []
    seconds = "/".join(f"{h.get('epoch_seconds', 0):.1f}" for h in history)
    rate = history[-1].get("samples_per_s", 0) if history else 0
    return (f"{rt['device']} bf16 resident compiled={rt.get('compiled')} "
            f"packed={rt.get('packed')}; epochs {seconds} s, {rate:.0f} samples/s")


class Gpu:
    """Every GPU's used memory, sampled while a step runs: its peak, and how much more than
    at the step's start a process took (serve and predict record no runtime of their own,
    so this is what says they ran on the GPU). Without NVML the figures are absent and
    nothing is asserted on them."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.base = self.peak = 0
        try:
            import pynvml

            pynvml.nvmlInit()
            self.nvml = pynvml
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                            for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception:  # no NVML: the table says so instead of failing a step
            self.handles = []

    def used(self) -> int:
        return sum(int(self.nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self.handles)

    def extra_mib(self) -> int | None:
        """The most GPU memory used so far in this step beyond what was used at its start."""
        return (max(self.peak, self.used()) - self.base) >> 20 if self.handles else None

    @contextlib.contextmanager
    def watch(self) -> Iterator[dict[str, float]]:
        seen: dict[str, float] = {}
        if not self.handles:
            yield seen
            return
        self.base = self.peak = self.used()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.25):
                self.peak = max(self.peak, self.used())

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()
            seen["peak_gib"] = max(self.peak, self.used()) / 2**30

    def describe(self) -> str:
        if not self.handles:
            return "GPU (no NVML)"
        name, driver = (_text(v) for v in (self.nvml.nvmlDeviceGetName(self.handles[0]),
                                           self.nvml.nvmlSystemGetDriverVersion()))
        return f"{len(self.handles)}x {name} (driver {driver})"


@dataclass
class Check:
    """One run of the check: where it works, its logs, and the current step's deadline."""

    repo: Path
    project: Path
    logs: Path
    gpus: int
    gpu: Gpu
    until: float = 0.0  # monotonic deadline of the step running now
    verbatim: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        from ferry.env import OFFLINE

        env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
        self.env = {**OFFLINE, **env, "PREFECT_HOME": str(self.project / ".prefect"),
                    "PYTHONUNBUFFERED": "1"}

    def ferry(self, log: str, *args: str) -> str:
        """A ``ferry`` command in the project, as a user types it."""
        return self.sh(log, [sys.executable, "-m", "ferry.cli", *args])

    def sh(self, log: str, cmd: list[str], cwd: Path | None = None) -> str:
        """Run ``cmd`` until the step's deadline; its output (appended to the step's log),
        or Failed with the line that says why."""
        path = self.logs / f"{log}.log"
        start = path.stat().st_size if path.exists() else 0
        with self._spawn(path, cmd, cwd) as proc:
            try:
                code = proc.wait(timeout=max(1.0, self.until - time.monotonic()))
            except subprocess.TimeoutExpired:
                _stop(proc, grace=5.0)  # out of time: no long goodbye
                raise Failed(f"{_name(cmd)} timed out (log {path.name})") from None
        with path.open("rb") as handle:
            handle.seek(start)
            out = handle.read().decode("utf-8", errors="replace")
        need(code == 0, f"{_name(cmd)} exited {code}: {_why(out)}")
        return out

    @contextlib.contextmanager
    def background(self, log: str, *args: str) -> Iterator[subprocess.Popen]:
        """A ``ferry`` command left running while the block talks to it, then Ctrl-C."""
        with self._spawn(self.logs / f"{log}.log", [sys.executable, "-m", "ferry.cli", *args],
                         None) as proc:
            yield proc

    @contextlib.contextmanager
    def _spawn(self, log: Path, cmd: list[str], cwd: Path | None) -> Iterator[subprocess.Popen]:
        """``cmd`` in its own process group, which is stopped on the way out: SIGINT (what
        Ctrl-C sends), then SIGKILL to whatever is left after 20 s."""
        with log.open("a", encoding="utf-8") as out:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            proc = subprocess.Popen(cmd, cwd=cwd or self.project, env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            try:
                yield proc
            finally:
                _stop(proc)

    def setting(self, section: str, key: str, default: str) -> str:
        """A value of the project's configs/default.yaml (what ``ferry run`` reads)."""
        import yaml

        tree = yaml.safe_load((self.project / "configs" / "default.yaml").read_text()) or {}
        return str((tree.get(section) or {}).get(key) or default)

    @staticmethod
    def completions(folder: Path, role: str) -> list[dict]:
        """The complete.json records of the ``role`` trainings (``*``: all) under folder."""
        return [json.loads(p.read_text(encoding="utf-8"))
                for p in sorted(folder.glob(f"{role}-*/complete.json"))]

    @staticmethod
    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """The process group of ``proc``, ended: politely (SIGINT, ``grace`` seconds), then for
    sure; a group whose leader already exited loses its stragglers at once."""
    group = proc.pid  # start_new_session: the group's id is the leader's pid
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
            if sig == signal.SIGINT:  # the leader is gone; its group may linger
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
                return


def _why(out: str) -> str:
    """The line of a failed command's output that says why: Ferry's ``error:`` line (with
    its continuation), else the first exception named (the root cause, before a launcher's
    own), else the last line."""
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    said = [i for i, line in enumerate(lines) if line.startswith("error:")]
    raised = [i for i, line in enumerate(lines) if re.match(r"[\w.]+(Error|Exception)\b", line)]
    if not (said or raised):
        return lines[-1][:200] if lines else "no output"
    i = said[-1] if said else raised[0]
    more = f" {lines[i + 1]}" if lines[i].endswith(":") and i + 1 < len(lines) else ""
    return (lines[i] + more)[:300]


def _name(cmd: list[str]) -> str:
    """``ferry run`` / ``throughput.py``: how a command is named in a failure."""
    if cmd[1:3] == ["-m", "ferry.cli"]:
        return "ferry " + (cmd[3] if len(cmd) > 3 else "")
    return Path(cmd[2] if cmd[1] == "-m" else cmd[1]).name if len(cmd) > 1 else cmd[0]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
