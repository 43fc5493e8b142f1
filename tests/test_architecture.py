"""The house's rules, checked on the import graph: no import cycle between modules or between the
concept folders of ``retriever/``, the query model imports nothing above it, nothing above the store
imports an engine, and the library never imports the tuner or the CLI.

Every import counts, also those inside functions (a lazy import hides a loop, it does not remove it);
only ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from conftest import REPO_ROOT

PACKAGES = ("retriever", "tuner")
ENGINES = ("qdrant_edge", "qdrant_client")
# Concept folders (and top-level modules) of retriever/, each allowed to import only those listed
# after it — the order is the layering, lowest last.
LAYERS = ("cli", "integrations", "service", "bench", "retriever", "calibration", "search", "ingest", "encoding",
          "store", "net", "query", "errors", "interrupts")


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue  # never runs
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from _runtime_imports(child)


def import_graph() -> dict[str, set[str]]:
    """module → the funnel modules (and engine packages) it imports."""
    modules = {_module(p): p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in found:
                while target and target not in modules and target.split(".")[0] not in ENGINES:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    targets.add(target.split(".")[0] if target.split(".")[0] in ENGINES else target)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def folder(module: str) -> str | None:
    """The concept folder (or top-level module) of a retriever module; None for the package itself."""
    parts = module.split(".")
    if parts[0] != "retriever" or len(parts) == 1:
        return None
    return "client" if parts[1] == "client" else parts[1]


def folder_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    folders: dict[str, set[str]] = {}
    for source, targets in graph.items():
        a = folder(source)
        if a is None:
            continue
        for t in targets:
            b = folder(t)
            if b is not None and b != a:
                folders.setdefault(a, set()).add(b)
    return folders


def test_no_module_cycles():
    assert cycles(import_graph()) == []


def test_no_folder_cycles():
    assert cycles(folder_graph(import_graph())) == []


def test_layers_import_downwards_only():
    wrong = []
    for source, targets in folder_graph(import_graph()).items():
        if source == "client":  # the compatibility re-export of service.client
            continue
        for target in targets:
            if LAYERS.index(target) <= LAYERS.index(source):
                wrong.append(f"{source} -> {target}")
    assert wrong == []


def test_engines_only_under_their_store():
    graph = import_graph()
    for module, targets in graph.items():
        if "qdrant_edge" in targets:
            assert module.startswith("retriever.store.edge."), module
        if "qdrant_client" in targets:
            assert module.startswith("retriever.store.server."), module


def test_library_never_imports_tuner_or_cli():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("retriever") and folder(module) != "cli":  # retriever/cli/ is the CLI: it runs the tuner
            assert not any(t.startswith("tuner") or t == "cli" or folder(t) == "cli" for t in targets), module


def test_graph_sees_real_imports():
    """The checker itself: it finds a known import, a lazy one, and leaves TYPE_CHECKING out."""
    graph = import_graph()
    assert "retriever.query.plan" in graph["retriever.store.spec"] or "retriever.query.plan" in graph[
        "retriever.query.spec"]
    assert "retriever.store.edge.catalog" in graph["retriever.store.factory"]  # imported inside open_catalog
    assert "retriever.store.server.catalog" not in graph["retriever.store.server.collection"]  # TYPE_CHECKING
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]


MAX_FUNCTION_LINES = 60


def test_no_long_function_without_a_reason():
    """A product function over 60 lines says why in its docstring ("long because …")."""
    long = []
    for pkg in (*PACKAGES, "cli.py"):
        root = REPO_ROOT / pkg
        for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                    if lines > MAX_FUNCTION_LINES and "long because" not in (ast.get_docstring(node) or ""):
                        long.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
