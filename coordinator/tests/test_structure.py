"""The package's layering: the application state does not depend on the app that serves it, and
no module imports another one that (directly or not) imports it back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hydra_coordinator

PACKAGE = Path(hydra_coordinator.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["hydra_coordinator", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere: at import time, in a function (a lazy
    import) or for the type checker only (a cycle there is still a tangle)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
                if node.level == 0:
                    stem = node.module or ""
                targets = [
                    f"{stem}.{a.name}" if f"{stem}.{a.name}" in files else stem for a in node.names
                ]
            else:
                continue
            edges |= {t for t in targets if t in files and t != name}
        graph[name] = edges
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in stack:
            return [*stack[stack.index(node) :], node]
        if node in done:
            return None
        stack.append(node)
        for nxt in sorted(graph[node]):
            if (found := visit(nxt)) is not None:
                return found
        stack.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if (found := visit(start)) is not None:
            return found
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert "hydra_coordinator.config" in graph["hydra_coordinator.cli"]  # the graph is real
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_only_the_server_imports_the_app():
    importers = {name for name, edges in import_graph().items() if "hydra_coordinator.app" in edges}
    assert importers == {"hydra_coordinator.server"}


def test_importing_the_application_state_does_not_import_the_app():
    code = (
        "import sys, hydra_coordinator.runtime\n"
        "print(sorted(m for m in sys.modules if m == 'hydra_coordinator.app' or "
        "m.startswith(('hydra_coordinator.api', 'hydra_coordinator.mcp', 'mcp'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
