"""The shape of the code base, checked from its source: the import graph of ``mm1core``, ``orchestrator`` and
``dashboards`` has no cycle, and each package imports only what DESIGN.md allows it.

Every ``import`` / ``from ... import`` statement of a file counts, wherever it stands: at the top, inside a
function, under ``if TYPE_CHECKING:``. A function-local import hides a cycle from Python, not from a reader. An
imported name maps to the longest project module it names (``from mm1core.lm import decoder`` is an edge to
``mm1core.lm.decoder``, ``from mm1core.lm import DECODERS`` one to ``mm1core.lm``), as ``/tmp/tools/cycles.py``
counts them.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mm1core", "orchestrator", "dashboards")
# What each package must never import (DESIGN.md: one trial trains alone; dashboards read MLflow, not the sweep layer).
FORBIDDEN = {
    "mm1core": ("ray", "mlflow", "orchestrator", "dashboards"),
    "dashboards": ("orchestrator",),
}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every Python file of the three packages (a package is its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = modules()


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, dotted name)`` of every absolute import in the file, a ``from`` import giving its module and each
    ``module.name`` it takes."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            yield from ((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)


def project_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for _, imported in imported_names(path):
            target = project_module(imported)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a -> b -> ... -> a``) through each strongly connected component of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [cycle_in(graph, set(component)) for component in components]


def cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first), as ``[a, b, ..., a]``."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    return sorted(component)


def test_the_import_graph_has_no_cycle() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join("  " + " -> ".join(cycle) for cycle in found)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_it_must_not(package: str) -> None:
    banned = FORBIDDEN[package]
    offences = [
        f"{path.relative_to(ROOT)}:{line}: imports {imported}"
        for name, path in MODULES.items()
        if name.split(".")[0] == package
        for line, imported in imported_names(path)
        if imported.split(".")[0] in banned
    ]
    assert not offences, f"{package} must not import {', '.join(banned)}:\n" + "\n".join(offences)


def test_the_checker_sees_local_and_type_checking_imports(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from mm1core.lm import decoder\n"
        "def f():\n    import orchestrator.run\n"
    )
    (tmp_path / "m.py").write_text(source)
    names = [name for _, name in imported_names(tmp_path / "m.py")]
    assert "mm1core.lm.decoder" in names and "orchestrator.run" in names
    assert project_module("mm1core.lm.decoder") == "mm1core.lm.decoder"
    assert project_module("mm1core.lm.DECODERS") == "mm1core.lm"
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def _imports_in_a_fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_trial_config_imports_without_torch() -> None:
    result = _imports_in_a_fresh_interpreter("import sys, mm1core.config; assert 'torch' not in sys.modules")
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_command_line_imports_nothing_heavy() -> None:
    """``mm1 --help`` and bad input stay fast: the verbs import torch, Lightning, Ray, MLflow and pandas themselves."""
    heavy = ("torch", "lightning", "ray", "mlflow", "pandas")
    code = f"import sys, orchestrator.cli; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = _imports_in_a_fresh_interpreter(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
