"""The experiments package's modules import each other in one direction only, and at module top.

Before, ``tables`` imported ``planning`` inside functions while ``planning`` imported ``tables``: a cycle held
together by late imports. What both need now lives in ``rows`` and ``session``.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import road_repro.experiments

PACKAGE = "road_repro.experiments"
FOLDER = Path(road_repro.experiments.__file__).parent


def _module(path: Path) -> str:
    """``path``'s module name inside the package: ``stages``, ``stage_kinds.finetune``, ``stage_kinds``."""
    parts = path.relative_to(FOLDER).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    """The package's modules one import statement names (``from road_repro.experiments import x`` counts x)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        names = {node.module or ""} | {f"{node.module}.{alias.name}" for alias in node.names}
    return {name[len(PACKAGE) + 1:] for name in names if name[len(PACKAGE) + 1:] in known}


def _imports(path: Path, known: set[str]) -> tuple[set[str], list[str]]:
    """The package's modules ``path`` imports, and the ones it imports anywhere but at module top (line: name)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found, late = set(), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = _imported_modules(node, known)
            found |= modules
            if modules and id(node) not in top:
                late += [f"{_module(path)}:{node.lineno}: {module}" for module in sorted(modules)]
    return found, late


def test_the_experiments_modules_import_each_other_without_cycles_and_at_module_top():
    paths = sorted(p for p in FOLDER.rglob("*.py") if _module(p))  # (not the package's own __init__)
    known = {_module(p) for p in paths}
    assert {"context", "stage_kinds", "stage_kinds.finetune", "stage_kinds.mtl"} <= known  # subpackages count too
    graph, late = {}, []
    for path in paths:
        modules, nested = _imports(path, known)
        graph[_module(path)] = modules - {_module(path)}
        late += nested
    assert late == [], "imports of the package's modules inside functions (a sign of a cycle)"
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
    assert order.index("planning") < order.index("tables")  # the run uses the planner, not the other way round
