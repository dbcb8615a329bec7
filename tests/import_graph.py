"""The import graph of the aioqueue package, read from the source (AST), for
architecture tests: no import cycle, only the broker layer imports redis.

Every import counts: module level, inside functions (lazy imports) and under
``if TYPE_CHECKING:`` — a type-only import is still a dependency of the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "aioqueue"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE


def module_name(path: Path) -> str:
    """``aioqueue/dashboard/app.py`` -> ``aioqueue.dashboard.app``."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    """Absolute names of the modules an ``import from`` brings in."""
    if node.level:
        base = current.split(".")
        if not is_package:
            base.pop()
        base = base[:len(base) - (node.level - 1)]
        prefix = ".".join(base)
        target = f"{prefix}.{node.module}" if node.module else prefix
    else:
        target = node.module or ""
    # `from . import x` / `from .pkg import mod` may name submodules
    names = [target]
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        if _is_module(candidate):
            names.append(candidate)
    return names


def _is_module(name: str) -> bool:
    if not name.startswith(PACKAGE):
        return False
    rel = Path(*name.split("."))
    root = PACKAGE_DIR.parent
    return (root / rel).with_suffix(".py").exists() or (root / rel / "__init__.py").exists()


def _normalise(name: str) -> str:
    """Package modules keep their full name; third-party ones their top level."""
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        return name
    return name.split(".")[0]


def module_imports() -> dict[str, set[str]]:
    """Each aioqueue module -> every module it imports (aioqueue modules by
    full name, others by top-level name, e.g. ``"redis"``)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        name = module_name(path)
        is_package = path.name == "__init__.py"
        imported: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(_normalise(a.name) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.update(_normalise(n) for n in _resolve(name, is_package, node))
        imported.discard(name)
        graph[name] = imported
    return graph


def package_graph() -> dict[str, set[str]]:
    """Only the edges between aioqueue's own modules. The package itself
    (``aioqueue/__init__.py``, which re-exports everything) is left out, as is
    an import of it, so re-exports do not count as a cycle."""
    graph = module_imports()
    return {
        mod: {d for d in deps if d.startswith(PACKAGE + ".") and d in graph}
        for mod, deps in graph.items() if mod != PACKAGE
    }


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None
