"""What a user reads: ``ferry run`` as a subprocess on a real DVC-tracked project, its output
going to a file (as in CI or under a Prefect worker), then a cached re-run.

The first run must show one line per training epoch although stdout is not a terminal; the
re-run must be short and free of other tools' chatter (warnings, DVC's "git add" hints, Great
Expectations' temporary directories), which goes to the run's log file instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import dvc_project, tiny_overrides

FERRY = str(Path(sys.executable).with_name("ferry"))
NOISE = re.compile(r"warning|git add|temporary directory|Traceback", re.I)


def _ferry(root: Path, args: list[str], out: Path, env: dict | None = None) -> tuple[int, str]:
    with out.open("w") as handle:
        code = subprocess.call([FERRY, *args], cwd=root, stdout=handle, stderr=subprocess.STDOUT,
                               env={**(env or os.environ), "COLUMNS": "200"}, timeout=600)
    return code, out.read_text(encoding="utf-8", errors="replace")


def test_first_run_prints_epochs_to_a_file_and_a_cached_rerun_is_short_and_quiet(
        tmp_path, tiny_bert, cli_env):
    root = tmp_path / "proj"
    root.mkdir()
    overrides = [*tiny_overrides(tiny_bert, dvc_project(root)), "data.dvc_file=data.dvc"]
    args = ["run", *[a for o in overrides for a in ("--set", o)]]
    code, first = _ferry(root, args, tmp_path / "first.txt", cli_env)
    assert code == 0, first
    for role in ("fine-tune", "scratch"):
        epochs = re.findall(rf"^{role} epoch (\d)/2 .*val_accuracy \d\.\d{{4}}", first, re.M)
        assert epochs == ["1", "2"], first
    code, again = _ferry(root, args, tmp_path / "again.txt", cli_env)
    assert code == 0, again
    lines = again.splitlines()
    assert len(lines) <= 25 and not NOISE.search(again), again
    assert "reused the finished training" in again and "test_accuracy" in again
    logs = sorted((root / ".ferry" / "logs").glob("*.log"))
    assert len(logs) == 2 and "prefect.flow_runs" in logs[-1].read_text(encoding="utf-8")


def test_usage_errors_are_one_line_and_a_hint(tmp_path):
    for args in (["runn"], ["run", "--bogus"], ["data", "add", "data", "extra"]):
        proc = subprocess.run([FERRY, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)
        output = (proc.stdout + proc.stderr).strip().splitlines()
        assert proc.returncode == 2 and len(output) <= 3, output
        assert output[0].startswith("error: ") and "Traceback" not in proc.stderr
    proc = subprocess.run([FERRY, "runn"], cwd=tmp_path, capture_output=True, text=True)
    assert "Did you mean 'run'?" in proc.stderr
