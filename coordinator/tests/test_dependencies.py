"""Every third-party module the coordinator imports comes from a dependency it declares.

A module that arrives only through another package's requirements (httpx through mcp 1.x,
anyio through starlette) breaks when that package changes: mcp 2.x no longer requires httpx, and
the Nix package installs exactly what package.nix lists (tests/eval/test-package.nix checks that
this equals pyproject.toml's dependencies).
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import hydra_coordinator

PACKAGE = Path(hydra_coordinator.__file__).parent
# Distributions that are part of a declared one: pydantic requires both (pydantic-core at its
# exact version), so pydantic's range covers them.
PART_OF = {"pydantic-core": "pydantic", "annotated-types": "pydantic"}
PYPROJECT = Path(__file__).parent.parent / "pyproject.toml"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = project["dependencies"]
    return {canonical(re.split(r"[^A-Za-z0-9._-]", r.strip(), maxsplit=1)[0]) for r in requirements}


def imports() -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("__future__", PACKAGE.name):
                    found.setdefault(top, set()).add(str(path.relative_to(PACKAGE)))
    return found


def test_every_imported_module_is_a_declared_dependency():
    dependencies = declared()
    owners = packages_distributions()
    undeclared = {}
    for module, files in sorted(imports().items()):
        distributions = {canonical(d) for d in owners.get(module, [])}
        distributions |= {PART_OF[d] for d in distributions if d in PART_OF}
        if not distributions & dependencies:
            undeclared[module] = (sorted(distributions) or "not installed", sorted(files))
    assert not undeclared, (
        "imported, but not from a distribution in [project.dependencies] "
        f"(module: (distributions, files)): {undeclared}"
    )


def test_the_scan_sees_the_imports():
    found = imports()
    assert {"fastapi", "mcp", "pydantic", "click"} <= set(found)
    assert "json" not in found and PACKAGE.name not in found
