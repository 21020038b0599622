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
