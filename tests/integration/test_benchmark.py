"""The benchmarks run end to end (tiny sizes on the CPU) and print their tables.

It checks the benchmark works, not a speed: figures are printed, never asserted.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


TRAINER_ROWS = ("trainer-default", "trainer-tuned", "trainer-tuned-compiled", "trainer-packed")
RAN = {"tiny-32": (*TRAINER_ROWS, "ferry", "ferry-packed"),  # compiled Trainer: fixed width
       "tiny-real": ("trainer-default", "trainer-tuned", "trainer-packed", "ferry",
                     "ferry-packed"),
       "tiny-cnn-32": ("trainer-default", "trainer-tuned", "ferry")}


def _check_row(row: list[str]) -> None:
    """One measured row: median samples/s inside its min-max, MFU in (0, 100), finish > 0."""
    median, (low, high) = float(row[2]), map(float, row[3].split("-"))
    assert 0 < low <= median <= high, row
    assert 0 < float(row[5]) < 100, row
    assert float(row[-2]) > 0, row  # finish s (median), then its min-max


def test_throughput_benchmark_smoke():
    """Every row of every smoke case is printed (measured, or skipped with its reason), both
    ratios name the best Trainer row, and a packed Ferry step matches the padded one."""
    out = subprocess.run([sys.executable, "benchmarks/throughput.py", "--smoke", "--device",
                          "cpu"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("device: CPU") and "matmul peak" in lines[0]
    agree = next(line for line in lines if line.startswith("packed agreement"))
    diffs = [float(v) for v in re.findall(r"\|d\w+\| (\S+)", agree)]
    assert len(diffs) == 3 and all(d <= 1e-4 for d in diffs), agree
    for case, ran in RAN.items():
        rows = {line.split()[1]: line.split() for line in lines if line.startswith(case + " ")}
        expected = set(TRAINER_ROWS) | {"ferry", "ferry-packed", "ratio"}
        assert set(rows) == expected | ({"ratio-packed"} if "ferry-packed" in ran else set()), \
            lines
        for name in expected - {"ratio"}:
            assert (rows[name][2] == "skipped:") == (name not in ran), rows[name]
            if name in ran:
                _check_row(rows[name])
        rates = {r: float(rows[r][2]) for r in ran if r.startswith("trainer")}
        best = {r for r, v in rates.items() if v == max(rates.values())}  # (printed: ties)
        assert rows["ratio"][2] in {f"ferry/{r}" for r in best}, rows["ratio"]
        assert re.fullmatch(r"\d+\.\d\dx", rows["ratio"][3]), rows["ratio"]
        if "ratio-packed" in rows:
            assert rows["ratio-packed"][2] in {f"ferry-packed/{r}" for r in best}, rows


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
