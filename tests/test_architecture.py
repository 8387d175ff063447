"""The layout holds (issue 12): no import cycles, a pure clinical core, HTTP only in routers
and `monitor/api`, one clock, every domain router strict.

Read from the source with `ast` (nothing is imported), so a violation names the file and line.
"""

from __future__ import annotations

import ast
import pathlib
import sys
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("monitor", "policies", "workers")


def _modules() -> dict[str, pathlib.Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: pathlib.Path) -> Iterator[tuple[int, str]]:
    """(line, module) of every import, at any depth (a lazy import can hide a cycle), except
    under `if TYPE_CHECKING:` (no run-time effect)."""

    def walk(node: ast.AST) -> Iterator[tuple[int, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                yield from ((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                for alias in child.names:
                    dotted = f"{child.module}.{alias.name}"
                    yield child.lineno, dotted if dotted in MODULES else child.module
            yield from walk(child)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")))


def _project_module(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        targets = {_project_module(imported) for _, imported in _imports(path)}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while (member := stack.pop()) != module:
                component.append(member)
            component.append(module)
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _third_party(path: pathlib.Path) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line}: {name}"
        for line, name in _imports(path)
        if name.split(".")[0] not in sys.stdlib_module_names
        and name.split(".")[0] not in ("policies", "pydantic", "__future__")
    ]


def test_the_clinical_core_is_pure() -> None:
    """`policies/`: the standard library and pydantic only (events in, decisions out)."""
    found = [line for name, path in MODULES.items() if name.startswith("policies") for line in
             _third_party(path)]  # fmt: skip
    assert found == []


HTTP = ("fastapi", "starlette")


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in MODULES
        if n.startswith("monitor.")
        and n.rpartition(".")[2] not in ("router", "deps", "errors", "openapi", "json_body")
        and not n.startswith(("monitor.api.", "monitor.app"))
    ],
)
def test_http_lives_in_routers(name: str) -> None:
    """Service functions take plain values (no request, no HTTP exception): HTTP belongs to
    each domain's `router.py` and to `monitor/api/`. FHIR's service answers FHIR JSON, the
    one exception (its responses are FHIR resources)."""
    allowed = {
        "monitor.interop.fhir.service": {"fastapi.responses"},
        # the instrumentation of the app itself (and the route template of a request's scope)
        "monitor.operations.tracing": {"fastapi", "starlette.types"},
    }
    http = [
        f"line {line}: {imported}"
        for line, imported in _imports(MODULES[name])
        if imported.split(".")[0] in HTTP and imported not in allowed.get(name, set())
    ]
    assert http == []


def test_one_clock() -> None:
    """The real time is read in `monitor.operations.clock` only; everything else takes the
    service time (`Settings.now`, `deps.Clock`) or `wall_now()`."""
    reads = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for name, path in MODULES.items()
        if name != "monitor.operations.clock"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("now", "utcnow")
        and ast.unparse(node.func.value) in ("dt.datetime", "datetime.datetime", "datetime")
    ]
    assert reads == []
