"""The import graph of src/lorasweep, built with ``ast`` (nothing is imported): no cycle, and the layers
that must not depend on each other do not.

Every ``import`` is an edge, at module level and inside functions alike (a function-level import
hides a cycle, it does not remove it); imports under ``if TYPE_CHECKING:`` are not (never executed).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def module_name(path: Path, root: Path = SRC) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return out


def imports_of(source: str, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports (``from pkg import mod`` -> ``pkg.mod``)."""
    tree = ast.parse(source)
    skip = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c of a package a.b without module c
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = SRC, package: str = "lorasweep") -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
    known = set(files)
    return {
        name: imports_of(path.read_text(), name, path.name == "__init__.py", known)
        for name, path in files.items()
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_is_read(graph):
    # known edges: if these are missing the parser is broken, and "no cycle" would mean nothing
    assert "lorasweep.rundir" in graph["lorasweep.sweep.search"]
    assert "lorasweep.sweep.trial" in graph["lorasweep.sweep.local"]  # module level
    assert "lorasweep.evals.suite" in graph["lorasweep.study"]  # inside a function
    assert "lorasweep.evals.vllm_backend" in graph["lorasweep.sweep.trial"]  # nested deeper
    assert len(graph) > 60


def test_no_import_cycle(graph):
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_data_does_not_import_evals(graph):
    bad = {
        (m, t)
        for m, targets in graph.items()
        if m.startswith("lorasweep.data")
        for t in targets
        if t == "lorasweep.evals" or t.startswith("lorasweep.evals.")
    }
    assert not bad, bad


def test_only_the_ray_modules_import_ray():
    files = sorted((SRC / "lorasweep").rglob("*.py"))
    users = [
        module_name(p)
        for p in files
        if any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "ray" for a in n.names))
            or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "ray")
            for n in ast.walk(ast.parse(p.read_text()))
        )
    ]
    assert users == ["lorasweep.sweep.ray_backend", "lorasweep.sweep.ray_cluster"]


def test_the_checker_finds_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import c\n")  # function-level, relative
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.sub.b\nimport pkg.a\n"
    )
    g = import_graph(tmp_path, "pkg")
    assert g["pkg.a"] == {"pkg.sub.b"} and g["pkg.sub.b"] == {"pkg.c"} and g["pkg.c"] == {"pkg.a"}
    assert find_cycle(g) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
