"""``benchmarks/gpu_check.py`` on a machine without a GPU (CI, this project's machines): it
refuses at once, in one line that says what to run instead, because a check that started
work and failed half-way would waste a GPU lease elsewhere and confuse here. And its header,
which names the CPU tests that already cover each GPU step, is checked against the tests
themselves, so the mapping cannot rot when a test is renamed or removed."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
REFERENCE = re.compile(r"(tests/[\w/]+\.py)\s*::\s*(test_\w+)")


def _gpu_here() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture
def gpu_check(monkeypatch):
    """The script as a module (its sibling helper imported as the script itself does)."""
    import importlib

    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    return importlib.import_module("gpu_check")


@pytest.mark.skipif(_gpu_here(), reason="this machine has a GPU: the check would run")
def test_without_a_gpu_it_stops_at_once_with_exit_2_and_one_line(tmp_path):
    began = time.monotonic()
    out = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - began
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "needs a CUDA GPU" in lines[0] and "make test" in lines[0]
    assert seconds < 10, f"took {seconds:.1f} s"
    assert not (tmp_path / "out").exists()  # no work began: not even its report folder


@pytest.mark.skipif(_gpu_here(), reason="this machine has a GPU")
def test_torch_is_asked_when_driver_files_are_present(gpu_check):
    """A driver without a usable device (a container without the GPU passed in, say)."""
    assert gpu_check.gpu_problem(check_driver=False) == "torch finds no usable CUDA device"


def _header_mapping() -> dict[str, list[tuple[str, str]]]:
    """Step name -> the (test file, test function) pairs its block of the header names."""
    doc = ast.get_docstring(ast.parse(SCRIPT.read_text(encoding="utf-8")))
    mapping = doc[doc.index("Each step, what it asserts"):]
    blocks = re.split(r"^(?=[a-z]+ {2,}\S)", mapping, flags=re.M)[1:]
    return {block.split()[0]: REFERENCE.findall(block) for block in blocks}


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_step_names_cpu_tests_that_exist(gpu_check):
    mapping = _header_mapping()
    assert list(mapping) == [step.name for step in gpu_check.STEPS]
    for step, references in mapping.items():
        assert references, f"the header names no CPU test for step {step}"
        for file, name in references:
            assert (ROOT / file).is_file(), f"{step}: {file} does not exist"
            assert name in _functions(ROOT / file), f"{step}: {file}::{name} does not exist"
