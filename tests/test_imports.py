"""The package has no import cycles: not at module level, not behind ``TYPE_CHECKING``, not in
imports inside functions. Every import statement of every module under ``monitor/`` counts."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "monitor"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}

    def known(name: str) -> str | None:
        """The module ``name`` resolves to, or its closest enclosing package we have."""
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # "from monitor import logs" imports the module monitor.logs
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                if target == "monitor" or target.startswith("monitor."):
                    resolved = known(target)
                    if resolved is not None and resolved != name:
                        graph[name].add(resolved)
                    # Importing a.b.c runs the package a.b's __init__ first: an edge to it too,
                    # unless the importer is inside that package (its own __init__ is running).
                    parent = (resolved or "").rpartition(".")[0]
                    while parent.count(".") >= 1:
                        if parent in files and not (name + ".").startswith(parent + "."):
                            graph[name].add(parent)
                        parent = parent.rpartition(".")[0]
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_graph_sees_every_kind_of_import() -> None:
    graph = import_graph()
    assert "monitor.cli" in graph and "monitor.store" in graph
    assert "monitor.store.db" in graph["monitor.store"]
    # function-level imports count: the CLI imports the service inside its command
    assert "monitor.service" in graph["monitor.cli"]


def test_importing_a_submodule_counts_as_importing_its_package() -> None:
    """``from monitor.store.db import X`` runs ``monitor/store/__init__.py`` first."""
    graph = import_graph()
    assert "monitor.store" in graph["monitor.reports"]


def test_find_cycle_reports_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_monitor_has_no_import_cycles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_rules_never_import_the_config() -> None:
    """The rules sit below the config: ``config`` derives ``[rules.<id>]`` from their registry,
    so no module of ``monitor.rules`` may import ``monitor.config``, even inside a function."""
    graph = import_graph()
    assert "monitor.rules" in graph["monitor.config"]
    upward = sorted(
        m for m, deps in graph.items() if m.startswith("monitor.rules") and "monitor.config" in deps
    )
    assert not upward


def sqlalchemy_exc_uses(path: Path) -> list[int]:
    """Lines of ``path`` that import ``sqlalchemy.exc`` (in any spelling) or reach it as an
    attribute (``sa.exc``, ``sqlalchemy.exc``)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            hit = any(a.name.startswith("sqlalchemy.exc") for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            hit = module.startswith("sqlalchemy.exc") or (
                module == "sqlalchemy" and any(a.name == "exc" for a in node.names)
            )
        else:
            hit = isinstance(node, ast.Attribute) and node.attr == "exc"
            hit = hit and isinstance(node.value, ast.Name) and node.value.id in ("sa", "sqlalchemy")
        if hit:
            lines.append(node.lineno)
    return lines


def test_only_the_store_sees_sqlalchemy_exceptions() -> None:
    """The store raises every database failure as ``DatabaseError``; no module outside
    ``monitor/store/`` imports ``sqlalchemy.exc`` to catch SQLAlchemy's own."""
    store = PACKAGE / "store"
    found = {
        f"{path.relative_to(PACKAGE.parent)}:{line}"
        for path in PACKAGE.rglob("*.py")
        if store not in path.parents
        for line in sqlalchemy_exc_uses(path)
    }
    assert found == set()
    assert sqlalchemy_exc_uses(store / "db.py"), "the scan no longer sees the store's own import"
