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


def _imported_modules(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The package's modules one import statement names (``from road_repro.experiments import x`` counts x)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    elif node.module == PACKAGE:
        names = {f"{PACKAGE}.{alias.name}" for alias in node.names}
    else:
        names = {node.module or ""}
    return {name.split(".")[2] for name in names if name.startswith(PACKAGE + ".")}


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """The package's modules ``path`` imports, and the ones it imports anywhere but at module top (line: name)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(node) for node in tree.body}
    found, late = set(), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = _imported_modules(node)
            found |= modules
            if modules and id(node) not in top:
                late += [f"{path.name}:{node.lineno}: {module}" for module in sorted(modules)]
    return found, late


def test_the_experiments_modules_import_each_other_without_cycles_and_at_module_top():
    graph, late = {}, []
    for path in sorted(FOLDER.glob("*.py")):
        modules, nested = _imports(path)
        graph[path.stem] = modules - {path.stem}
        late += nested
    assert late == [], "imports of the package's modules inside functions (a sign of a cycle)"
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None
    assert order.index("planning") < order.index("tables")  # the run uses the planner, not the other way round
