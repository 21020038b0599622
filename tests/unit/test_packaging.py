"""What ``pip install .`` promises: every third-party package the code imports is declared in
pyproject.toml (the library's in ``dependencies``, the benchmark's and the tests' in their
extras), and every declared package, setuptools included, is pinned in requirements.lock."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).parents[2]
OURS = {"ferry", "tasks", "flows", "tests", "benchmarks", "__future__"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[<>=!~\[ ;]", r)[0]) for r in requirements}


def _imported(area: str) -> set[str]:
    """Top-level names of the third-party modules imported under ``area``."""
    names: set[str] = set()
    local = {p.stem for p in (REPO / area).glob("*.py")}
    for path in (REPO / area).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - OURS - local


def _undeclared(area: str, declared: set[str]) -> dict[str, list[str]]:
    dists = md.packages_distributions()
    out = {}
    for name in sorted(_imported(area)):
        provided = {_norm(d) for d in dists.get(name, [name])}
        if not provided & declared:
            out[name] = sorted(provided)
    return out


PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
MAIN = _names(PROJECT["project"]["dependencies"])
EXTRAS = {k: _names(v) for k, v in PROJECT["project"]["optional-dependencies"].items()}


def test_the_library_imports_only_what_it_declares():
    for area in ("ferry", "tasks", "flows"):
        assert _undeclared(area, MAIN) == {}, area


def test_the_benchmarks_and_tests_declare_their_extras():
    assert _undeclared("benchmarks", MAIN | EXTRAS["bench"]) == {}
    assert _undeclared("tests", MAIN | EXTRAS["dev"]) == {}
    assert "accelerate" in EXTRAS["bench"]  # the Trainer side of the benchmark needs it


def test_every_declared_package_and_the_build_backend_are_pinned_in_the_lock():
    lock = {_norm(line.split("==")[0]): line.split("==")[1]
            for line in (REPO / "requirements.lock").read_text().splitlines() if "==" in line}
    declared = MAIN | set().union(*EXTRAS.values())
    assert sorted(declared - set(lock)) == []
    backend = PROJECT["build-system"]["requires"]
    assert backend == [f"setuptools=={lock['setuptools']}"]


def test_the_shipped_data_version_is_the_one_data_dvc_records():
    """``ferry init`` rebuilds the built-in datasets only over this version: keep them equal."""
    from pathlib import Path

    from ferry.data import recipes, versioning

    root = Path(__file__).resolve().parents[2]
    assert versioning.tracked_out(root, Path("data.dvc"))[1] == recipes.SHIPPED_VERSION
