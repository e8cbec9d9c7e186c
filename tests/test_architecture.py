"""The package's shape holds (docs/architecture.md): no import cycles, short modules, layers that
import only downward. Imports inside functions count: they hide a cycle, they do not break it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("realtime", "accounts", "rpgrealtime", "play")
MAX_MODULE_LINES = 450
MAX_BASE_CONSUMER_LINES = 300
# The edges (layer 6) and the features (layer 5); everything else in realtime/ is below them.
UPPER = ("realtime.features", "realtime.consumers", "realtime.views", "realtime.admin", "realtime.management")
UPPER_MODULES = (
    "realtime.boot",
    "realtime.routing",
    "realtime.urls",
    "realtime.apps",
    "realtime.middleware",
    "realtime.server_hooks",
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts
    }


MODULES = _sources()


def _own(name: str) -> str | None:
    """The project module `name` refers to (a name imported from a module resolves to the module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(target for name in names if (target := _own(name)) and target != module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_import_cycles():
    assert _cycles() == []


def test_the_cycle_finder_sees_a_cycle_through_a_function_local_import(monkeypatch):
    monkeypatch.setitem(GRAPH, "realtime.groups", GRAPH["realtime.groups"] | {"realtime.hub"})
    assert any({"realtime.groups", "realtime.hub"} <= set(cycle) for cycle in _cycles())


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("realtime.")))
def test_modules_stay_short(module):
    lines = MODULES[module].read_text().count("\n")
    limit = MAX_BASE_CONSUMER_LINES if module == "realtime.consumers.base" else MAX_MODULE_LINES
    assert lines <= limit, f"{module} has {lines} lines (at most {limit}): split it by job"


def _upper(module: str) -> bool:
    return module in UPPER_MODULES or any(module == top or module.startswith(f"{top}.") for top in UPPER)


def test_lower_layers_import_no_feature_and_no_edge():
    wrong = {
        module: sorted(target for target in GRAPH[module] if _upper(target))
        for module in GRAPH
        if module.startswith("realtime.") and not _upper(module)
    }
    assert {module: targets for module, targets in wrong.items() if targets} == {}
