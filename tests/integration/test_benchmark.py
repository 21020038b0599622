"""The throughput benchmark runs end to end (tiny sizes on the CPU) and prints its table.

It checks the benchmark works, not a speed: figures are printed, never asserted.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_throughput_benchmark_smoke():
    out = subprocess.run([sys.executable, "benchmarks/throughput.py", "--smoke", "--device",
                          "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: CPU") and "matmul peak" in lines[0]
    for case in ("tiny-128", "tiny-real", "tiny-cnn-64"):
        rows = {line.split()[1]: line.split() for line in lines if line.startswith(case)}
        assert set(rows) == {"trainer", "ferry", "ratio"}, lines
        for loop in ("trainer", "ferry"):
            samples_per_s, mfu = float(rows[loop][2]), float(rows[loop][4])
            assert samples_per_s > 0 and 0 < mfu < 100
        assert re.fullmatch(r"\d+\.\d\dx", rows["ratio"][2])


def test_tuning_benchmark_smoke(tmp_path, cli_env):
    """Three arms (the Trainer's Optuna search, ``ferry tune`` on the same space and on its
    own), 2 trials each on a tiny BERT; ``cli_env``: the ``ferry`` subprocesses share the
    session's Prefect server instead of starting one each."""
    arms = ("trainer", "ferry-same-space", "ferry-full-space")
    out = subprocess.run([sys.executable, "benchmarks/tuning.py", "--smoke", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=600, env=cli_env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    lines = out.stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.split()
            and line.split()[0] in arms}
    assert set(rows) == set(arms), lines
    for arm in arms:
        trials, wall = int(rows[arm][1]), float(rows[arm][5])
        assert trials == 2 and wall > 0, rows[arm]
    for arm in arms[1:]:  # Ferry's searches learn the learnable rows (12 validation: chance 0.5)
        assert float(rows[arm][2]) >= 0.75, rows[arm]
    assert sum(line.startswith("ratio ferry-") for line in lines) == 2, lines
    assert len(list(tmp_path.glob("tuning-*.json"))) == 1, list(tmp_path.iterdir())
