"""The layers of ``gateway/`` as imports show them: no import cycle anywhere (function-level
and type-checking imports included), and the pure or in-memory parts load no backend."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"


def module_name(path: Path, root: Path) -> str:
    """``gateway.store.base`` for gateway/store/base.py, ``gateway.store`` for its __init__.py."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module → the modules of the same package tree it imports, wherever the import statement
    stands (module level, inside a function, under ``if TYPE_CHECKING``)."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:
                    # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module.
                    if f"{source}.{alias.name}" in modules:
                        edges.add(f"{source}.{alias.name}")
                    elif source in modules:
                        edges.add(source)
        edges.discard(name)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each one holds a cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:
        # Iterative Tarjan: (node, iterator over its successors).
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_gateway_has_no_import_cycle() -> None:
    graph = import_graph(GATEWAY)
    assert "gateway.withdrawal" in graph["gateway.service"]  # the walk finds imports at all
    assert cycles(graph) == []


def test_the_cycle_check_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("from .leaf import VALUE\n")
    (root / "sub" / "leaf.py").write_text("VALUE = 1\n")
    (root / "service.py").write_text("from pkg import flow\n")
    (root / "flow.py").write_text("def run():\n    from pkg.service import thing\n")
    (root / "clean.py").write_text("from pkg.sub import VALUE\n")
    graph = import_graph(root)
    assert graph["pkg.sub"] == {"pkg.sub.leaf"} and graph["pkg.clean"] == {"pkg.sub"}
    assert cycles(graph) == [["pkg.flow", "pkg.service"]]
    (root / "clean.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import flow\n")
    (root / "flow.py").write_text("from pkg import clean\n")
    assert cycles(import_graph(root)) == [["pkg.clean", "pkg.flow"]]


def _fresh_import(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=GATEWAY.parent, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize(("imports", "absent"), [
    # The pure consent policy needs the record types, not a database.
    ("import gateway.consent", "gateway.store.sqlite"),
    ("import gateway.consent", "sqlite3"),
    # The in-memory transport (demo, unit tests) needs no broker client.
    ("import gateway.transport.memory", "aio_pika"),
    ("from gateway.transport import MemoryBroker, MemoryTransport, WireMessage", "aio_pika"),
    # The flows get their collaborators passed in: they do not load the service.
    ("import gateway.withdrawal, gateway.retention, gateway.audit.exchange", "gateway.service"),
])
def test_import_does_not_load(imports: str, absent: str) -> None:
    result = _fresh_import(f"{imports}\nimport sys\nprint({absent!r} in sys.modules)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False", f"{imports!r} loads {absent}"


def test_the_backends_still_load_on_first_use() -> None:
    result = _fresh_import("import sys\nfrom gateway.transport import AmqpTransport, delete_topology\n"
                           "from gateway.store import SQLiteStore\n"
                           "print('aio_pika' in sys.modules, 'gateway.store.sqlite' in sys.modules)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["True", "True"]
