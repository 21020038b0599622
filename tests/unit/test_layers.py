"""The house rules, enforced: layers, one owner per outside system, no import cycles, sizes.

Read from the code with ``ast`` (nothing is imported): every ``import``/``from`` statement,
at module level or inside a function (a lazy import is still a dependency), plus
``importlib.import_module("...")`` with a literal name (the CLI loads flows that way). Imports
under ``if TYPE_CHECKING:`` are left out: they never run.

The rules, and why:
- no cycle among the modules of ``ferry/``, ``tasks/`` and ``flows/`` (a cycle makes import
  order matter and every change risky);
- the library (``ferry/`` except ``ferry/cli``) never imports Prefect, ``flows`` or ``tasks``:
  it runs without an orchestrator; the CLI is the top layer and may import flows;
- nothing imports ``ferry.cli`` (the top has nothing above it);
- each outside system has one owner: MLflow only under ``ferry/tracking/``, DVC (and its
  scmrepo) only in ``ferry/data/versioning.py``, Great Expectations only in
  ``ferry/data/validation.py``;
- ``tasks`` never import ``flows``; ``flows`` never import torch (they pass references);
- modules are at most 350 lines and functions at most 60.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).parents[2]
PACKAGES = ("ferry", "tasks", "flows")
OWNERS = {"mlflow": ("ferry.tracking",), "dvc": ("ferry.data.versioning",),
          "scmrepo": ("ferry.data.versioning",),
          "great_expectations": ("ferry.data.validation",)}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60


@dataclass
class Module:
    name: str
    path: Path
    imports: set[str] = field(default_factory=set)  # dotted names as written (resolved)


def _name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(tree: ast.AST, known: set[str]) -> set[str]:
    skip, out = _type_checking_lines(tree), set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:  # `from ferry import steps` imports ferry.steps
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") \
                and node.args and isinstance(node.args[0], ast.Constant):
            out.add(str(node.args[0].value))
    return out


def read_tree(root: Path) -> dict[str, Module]:
    """Every module of the project packages under ``root`` with what it imports."""
    paths = [p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))
             if "__pycache__" not in p.parts]
    modules = {_name(p, root): Module(_name(p, root), p) for p in paths}
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        module.imports = _imports(tree, set(modules))
    return modules


def _top(name: str) -> str:
    return name.split(".")[0]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_violations(modules: dict[str, Module]) -> list[str]:
    """Each broken layering or ownership rule, as 'module imports X: rule'."""
    out = []
    for m in modules.values():
        library = _under(m.name, ("ferry",)) and not _under(m.name, ("ferry.cli",))
        for imp in sorted(m.imports):
            if library and _top(imp) in ("prefect", "flows", "tasks"):
                out.append(f"{m.name} imports {imp}: the library never imports Prefect, "
                           "flows or tasks")
            if _under(imp, ("ferry.cli",)) and not _under(m.name, ("ferry.cli",)):
                out.append(f"{m.name} imports {imp}: nothing imports the CLI")
            owners = OWNERS.get(_top(imp))
            if owners and not _under(m.name, owners):
                out.append(f"{m.name} imports {imp}: only {', '.join(owners)} may")
            if _under(m.name, ("tasks",)) and _top(imp) == "flows":
                out.append(f"{m.name} imports {imp}: tasks never import flows")
            if _under(m.name, ("flows",)) and _top(imp) == "torch":
                out.append(f"{m.name} imports {imp}: flows pass references, never tensors")
    return out


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    graph = {n: sorted(i for i in m.imports if i in modules and i != n)
             for n, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def size_violations(modules: dict[str, Module]) -> list[str]:
    out = []
    for m in modules.values():
        text = m.path.read_text(encoding="utf-8")
        if (n := len(text.splitlines())) > MAX_MODULE_LINES:
            out.append(f"{m.path}: {n} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    out.append(f"{m.path}:{node.lineno} {node.name}: {length} lines "
                               f"(at most {MAX_FUNCTION_LINES})")
    return out


def test_no_import_cycles():
    assert cycles(read_tree(REPO)) == []


def test_layers_and_owners_of_outside_systems():
    assert layer_violations(read_tree(REPO)) == []


def test_modules_and_functions_stay_small():
    assert size_violations(read_tree(REPO)) == []


def test_the_graph_sees_lazy_and_string_imports():
    """The rules are only as good as the graph: it must see what a reviewer would."""
    modules = read_tree(REPO)
    assert "flows.transfer" in modules["ferry.cli.training"].imports  # import_module("...")
    assert "mlflow" in modules["ferry.tracking.runs"].imports
    assert "torch" in modules["ferry.transfer.training"].imports
    assert "ferry.steps" in modules["ferry.experiments"].imports  # from ferry import steps
    assert "ferry.tracking" in modules["ferry.steps.runs"].imports  # inside a function


def test_each_rule_fails_when_broken(tmp_path):
    """A tree that breaks every rule once is caught on every count."""
    files = {
        "ferry/__init__.py": "",
        "ferry/a.py": "import prefect\nfrom ferry import b\n",
        "ferry/b.py": "def f():\n    from ferry import a\n    import mlflow\n",
        "ferry/data/__init__.py": "",
        "ferry/data/loading.py": "import great_expectations\nfrom dvc.repo import Repo\n",
        "ferry/cli/__init__.py": "import flows.x\n",
        "ferry/c.py": "from ferry.cli import main\n",
        "tasks/__init__.py": "",
        "tasks/t.py": "from flows import x\n",
        "flows/__init__.py": "",
        "flows/x.py": "import torch\n" + "x = 1\n" * 351,
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    modules = read_tree(tmp_path)
    assert cycles(modules) == [["ferry.a", "ferry.b"]]
    found = "\n".join(layer_violations(modules))
    for needle in ("ferry.a imports prefect", "ferry.b imports mlflow",
                   "ferry.data.loading imports great_expectations",
                   "ferry.data.loading imports dvc.repo", "ferry.c imports ferry.cli",
                   "tasks.t imports flows.x", "flows.x imports torch"):
        assert needle in found, found
    assert "ferry.cli imports flows" not in found  # the CLI is the top layer
    assert any("352 lines" in v for v in size_violations(modules))
