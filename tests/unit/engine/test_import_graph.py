"""The engine's own import graph: no cycle, nothing hidden behind TYPE_CHECKING (issue 13, "Done when").

Read from the source with ``ast`` (every import statement, wherever it is in the module), so a cycle cannot hide
behind an import inside a function or a ``TYPE_CHECKING`` block either.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import PROJECT_ROOT

ENGINE = PROJECT_ROOT / "cds_service" / "engine"
PACKAGE = "cds_service.engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _engine_modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ENGINE.rglob("*.py"))}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The engine modules ``path`` imports (``from package import submodule`` counts as the submodule)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = names & modules.keys()
            found.update(submodules)
            if node.module in modules and names - submodules:
                found.add(node.module)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)) is not None:
            return found
    return None


def test_the_graph_reader_finds_a_cycle_when_there_is_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_engine_has_no_import_cycle() -> None:
    modules = _engine_modules()
    assert f"{PACKAGE}.recommend.types" in modules  # the walk sees the subpackage
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert graph[f"{PACKAGE}.recommend"] >= {f"{PACKAGE}.recommend.orders", f"{PACKAGE}.recommend.patient_view"}
    assert _cycle(graph) is None


def test_no_engine_module_hides_an_import_behind_type_checking() -> None:
    offenders = [name for name, path in _engine_modules().items() if "TYPE_CHECKING" in path.read_text("utf-8")]
    assert offenders == []


def test_the_recommend_function_does_not_shadow_its_package() -> None:
    import cds_service.engine
    import cds_service.engine.recommend as recommend_package

    assert getattr(cds_service.engine, "recommend", recommend_package) is recommend_package
    assert callable(recommend_package.recommend)
