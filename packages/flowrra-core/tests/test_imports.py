"""No import circles in flowrra: every module imports on its own in a fresh interpreter,
and the graph of module-level imports (those under ``if TYPE_CHECKING:`` included, since a
type checker follows them) has no cycle. An import inside a function is not an edge: it
runs after both modules have loaded."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowrra
import flowrra.schedules

PACKAGE = Path(flowrra.__file__).parent
#: Modules that do something when imported: ``python -m flowrra`` runs the command line.
RUN_ON_IMPORT = {"flowrra.__main__"}


def modules() -> dict[str, Path]:
    """Every module of the flowrra package by dotted name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The flowrra modules ``name`` imports at module level (under ``if``/``try`` too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    body = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If | ast.Try):
            body += node.body + node.orelse
            body += [n for h in getattr(node, "handlers", []) for n in h.body]
            body += getattr(node, "finalbody", [])
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            submodules = [f"{source}.{alias.name}" for alias in node.names]
            yield from (m for m in submodules if m in known)
            # ``from package import name``: the package's own code runs, unless ``name`` is
            # one of its modules or the package is this module's own (imported first anyway).
            own = name == source or name.startswith(source + ".")
            if any(m not in known for m in submodules) and source in known and not own:
                yield source


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_module_level_imports_have_no_cycle() -> None:
    found = modules()
    graph = {name: set(imported(name, path, set(found))) - {name} for name, path in found.items()}
    assert graph["flowrra.plugins"] and "flowrra.app" in graph  # the walk sees imports
    assert cycles(graph) == []


def test_a_cycle_is_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_imports_on_its_own_in_a_fresh_interpreter() -> None:
    names = sorted(set(modules()) - RUN_ON_IMPORT)
    runs = {
        name: subprocess.Popen(
            [sys.executable, "-c", f"import {name}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in names
    }
    failures = {}
    for name, run in runs.items():
        output, _ = run.communicate(timeout=120)
        if run.returncode:
            failures[name] = output.strip().splitlines()[-1:]
    assert failures == {}


def test_the_schedule_store_lookup_is_importable_where_it_was() -> None:
    from flowrra import get_scheduler_backend
    from flowrra.plugins import get_scheduler_backend as in_plugins
    from flowrra.schedules import get_scheduler_backend as old_path

    assert get_scheduler_backend is in_plugins is old_path
    with pytest.raises(AttributeError, match="no_such_name"):
        flowrra.schedules.no_such_name  # noqa: B018
