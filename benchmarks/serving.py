"""Serving: `ferry serve` vs `mlflow models serve`, the same registered version, this machine.

Both servers load ``models:/NAME/VERSION`` from the project's store and are measured one
after the other (never at once), on loopback. ``mlflow models serve`` runs with its defaults
(``--env-manager local``; one uvicorn worker, 60 s request timeout): what a user gets;
``ferry serve`` with its config's defaults (``serve.max_batch`` 64, ``serve.max_wait_ms``
10). For each number of concurrent clients, each client posts one text per request
(``{"inputs": ["..."]}``, MLflow's scoring protocol), back to back on a keep-alive
connection, for ``--seconds`` after a one-second warm-up; the load stops by itself. Prints
p50/p99 latency and requests/s per cell, then the ferry / mlflow ratios at the most clients.
The clients run on the same cores as the server (as they do for both servers).

    python benchmarks/serving.py                          # tracking.model_name @champion,
                                                          # else @challenger
    python benchmarks/serving.py --model ferry-rotten-tomatoes/3 --seconds 15
    python benchmarks/serving.py --clients 1 8 32 --servers ferry
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# Review snippets of typical length (the default dataset's median is ~100 characters).
TEXTS = [
    "A gripping, beautifully acted film that earns every one of its quiet, devastating moments.",
    "Tedious and overlong, the movie mistakes noise for energy and cruelty for wit.",
    "An uneven but often charming comedy, carried by a terrific lead performance.",
    "The plot is thin, the dialogue is worse, and the ending never arrives soon enough.",
    "Smart, funny and surprisingly moving: the best animated feature of the year.",
    "It looks gorgeous, yet there is barely a story under all that polish.",
    "A modest thriller that knows exactly what it is and delivers it with style.",
    "Flat characters and lazy jokes sink what could have been a sharp satire.",
]


@dataclass
class Cell:
    server: str
    clients: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def row(self) -> dict:
        lat = sorted(self.latencies)
        pick = (lambda q: 1000 * lat[min(len(lat) - 1, int(q * len(lat)))]) if lat else \
            (lambda q: float("nan"))
        return {"server": self.server, "clients": self.clients,
                "req/s": len(lat) / self.seconds, "p50 ms": pick(0.50), "p99 ms": pick(0.99),
                "requests": len(lat), "errors": self.errors}


def resolve(args) -> tuple[str, str, str, dict]:
    """(name, version, tracking URI, the config's serve section) of the model to serve."""
    from ferry.config import load_config
    from ferry.errors import FerryError
    from ferry.tracking import Tracker
    from ferry.tracking.registry import parse_ref

    cfg = load_config(args.config, args.overrides)
    tracker = Tracker(cfg)
    if args.model:
        name, ref = parse_ref(args.model, cfg.tracking.model_name, "champion")
        refs = [ref]
    else:
        name, refs = cfg.tracking.model_name, ["champion", "challenger"]
    for ref in refs:
        with contextlib.suppress(FerryError):
            version, _ = tracker.model(name).version_of(ref)
            return name, version, tracker.uri, cfg.serve.model_dump()
    sys.exit(f"no registered version of {name} ({' or '.join('@' + r for r in refs)}) in "
             f"{tracker.uri}: run `make run` first (or pass --model NAME/VERSION)")


def start(kind: str, name: str, version: str, port: int, args, env: dict) -> subprocess.Popen:
    bin_dir = Path(sys.executable).parent
    if kind == "mlflow":
        cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", f"models:/{name}/{version}",
               "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    else:
        cmd = [str(bin_dir / "ferry"), "serve", "--model", f"{name}/{version}", "--host",
               "127.0.0.1", "--port", str(port),
               *(["-c", str(args.config)] if args.config else []),
               *[x for o in args.overrides for x in ("--set", o)]]
    log = open(Path(args.logs) / f"{kind}.log", "wb")  # noqa: SIM115 - the server's lifetime
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_ready(proc: subprocess.Popen, port: int, kind: str, timeout: float = 300) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if proc.poll() is not None:
            sys.exit(f"{kind} server exited with {proc.returncode}; see its log")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
            if r.status == 200:
                return time.monotonic() - began
        time.sleep(0.5)
    sys.exit(f"{kind} server not ready after {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def load(port: int, cell: Cell, warmup: float = 1.0) -> None:
    """``cell.clients`` threads posting single texts for warm-up + ``cell.seconds``; only
    requests that start and end inside the measured window count."""
    began = time.monotonic()
    window = (began + warmup, began + warmup + cell.seconds)
    lock = threading.Lock()

    def client(i: int) -> None:
        conn, n = http.client.HTTPConnection("127.0.0.1", port, timeout=120), i
        while time.monotonic() < window[1]:
            body = json.dumps({"inputs": [TEXTS[n % len(TEXTS)]]})
            n += 1
            t0 = time.monotonic()
            try:
                conn.request("POST", "/invocations", body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            t1 = time.monotonic()
            if t0 >= window[0] and t1 <= window[1]:
                with lock:
                    if ok:
                        cell.latencies.append(t1 - t0)
                    else:
                        cell.errors += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(cell.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(kind: str, name: str, version: str, args, env: dict) -> tuple[list[dict], float]:
    from ferry.stack import free_port

    port = free_port()
    proc = start(kind, name, version, port, args, env)
    try:
        ready = wait_ready(proc, port, kind)
        label = "mlflow models serve" if kind == "mlflow" else "ferry serve"
        rows = []
        for clients in args.clients:
            cell = Cell(label, clients, args.seconds)
            load(port, cell)
            rows.append(cell.row())
            print(_format(rows[-1]), flush=True)
        return rows, ready
    finally:
        stop(proc)


def _format(row: dict) -> str:
    return (f"{row['server']:<20} {row['clients']:>7} {row['req/s']:>10.1f} "
            f"{row['p50 ms']:>8.1f} {row['p99 ms']:>8.1f} {row['requests']:>9} "
            f"{row['errors']:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="NAME/VERSION or NAME@ALIAS (default: "
                        "tracking.model_name @champion, else @challenger)")
    parser.add_argument("--config", "-c", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured per cell")
    parser.add_argument("--servers", nargs="+", choices=["mlflow", "ferry"],
                        default=["mlflow", "ferry"])
    parser.add_argument("--logs", default=".ferry/bench/serving")
    args = parser.parse_args()
    from ferry.env import apply_offline_defaults

    apply_offline_defaults()
    Path(args.logs).mkdir(parents=True, exist_ok=True)
    name, version, uri, serve = resolve(args)
    # mlflow models serve execs `uvicorn` from PATH: this environment's, as when activated
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    print(f"serving {name} version {version} (models:/{name}/{version}) on {os.cpu_count()} "
          f"CPU cores; one text per request, {args.seconds:g} s per cell; ferry serve "
          f"max_batch {serve['max_batch']}, max_wait_ms {serve['max_wait_ms']:g}; mlflow "
          "models serve defaults (1 worker)", flush=True)
    print(f"{'server':<20} {'clients':>7} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'requests':>9} {'errors':>6}", flush=True)
    results = {}
    for kind in args.servers:
        results[kind], ready = measure(kind, name, version, args, env)
        print(f"  ({kind}: ready {ready:.1f} s after start)", flush=True)
    if len(results) == 2:
        a, b = results["ferry"][-1], results["mlflow"][-1]
        print(f"at {a['clients']} clients, ferry / mlflow: throughput "
              f"{a['req/s'] / b['req/s']:.2f}x, p99 latency {a['p99 ms'] / b['p99 ms']:.2f}x")


if __name__ == "__main__":
    main()
