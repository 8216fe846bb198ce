"""The layout's rules, read from the source: a framework-free core, no import circles, no
private imports across modules, short modules and short asset and sensor functions."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

from driftloop.paths import PROJECT_ROOT

PACKAGES = ("driftloop", "assets", "sensors", "pipelines", "resources")


def project_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


@functools.cache
def parsed(path: Path) -> ast.Module:
    """A file's syntax tree, read once for all the tests of this module."""
    return ast.parse(path.read_text())


def is_type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imported_names(tree: ast.AST) -> Iterator[str]:
    """Every dotted name an import statement reaches, at any depth (imports inside functions
    count: they are deferred, not absent), except under `if TYPE_CHECKING:`."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if is_type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, as import-linter's grimp reads them: every
    import statement, inside functions and under `if TYPE_CHECKING:` too."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    return {module: graph.find_modules_directly_imported_by(module) for module in graph.modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_and_ignores_a_chain() -> None:
    circle = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(circle) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_no_import_circles_among_the_project_modules() -> None:
    graph = import_graph()
    assert "driftloop.features.writer" in graph["assets.features"]  # the graph sees imports
    # An import under TYPE_CHECKING counts: the evaluation report's result type is one.
    assert "driftloop.evaluation.comparison" in graph["driftloop.evaluation.gate"]
    assert cycles(graph) == []


def test_the_layer_contracts_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyproject.toml's [tool.importlinter] contracts, as `uv run lint-imports` checks them:
    the core's layers, the Dagster side's, no Dagster in the core, no circles at any level."""
    monkeypatch.chdir(PROJECT_ROOT)
    assert lint_imports(no_cache=True, no_logo=True) == 0


def test_the_core_imports_no_dagster() -> None:
    offenders = [
        f"{module}: {name}"
        for module, path in project_modules().items()
        if module.startswith("driftloop")
        for name in imported_names(parsed(path))
        if name == "dagster" or name.startswith(("dagster.", "dagster_"))
    ]
    assert offenders == []


def private_imports(path: Path) -> list[str]:
    """`from <project module> import _name` statements in one file."""
    found = []
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] not in PACKAGES:
                continue
            found += [
                f"{path.relative_to(PROJECT_ROOT)}: {node.module}.{alias.name}"
                for alias in node.names
                if alias.name.startswith("_") and not alias.name.startswith("__")
            ]
    return found


def test_no_module_or_test_imports_a_private_helper_of_another() -> None:
    files = [*project_modules().values(), *sorted((PROJECT_ROOT / "tests").glob("*.py"))]
    assert [hit for path in files for hit in private_imports(path)] == []


MODULE_MAX_LINES = 400
FUNCTION_MAX_LINES = 60
# Over the limit in a module another change is rewriting; the entry goes when it is split.
LONG_FUNCTIONS_ALLOWED: set[str] = set()


def long_functions(path: Path, limit: int, root: Path = PROJECT_ROOT) -> dict[str, int]:
    """`file::name` -> lines, for every function (nested ones too) over `limit` lines."""
    found = {}
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            if lines > limit:
                found[f"{path.relative_to(root).as_posix()}::{node.name}"] = lines
    return found


def test_the_long_function_finder_counts_each_function_s_lines(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(4))
    source = tmp_path / "sample.py"
    source.write_text(f"def short():\n    return 1\n\n\ndef outer():\n    def inner():\n{body}\n")
    assert long_functions(source, limit=4, root=tmp_path) == {
        "sample.py::outer": 6,
        "sample.py::inner": 5,
    }
    assert long_functions(source, limit=6, root=tmp_path) == {}


def test_every_module_stays_under_about_400_lines() -> None:
    lengths = {
        module: len(path.read_text().splitlines()) for module, path in project_modules().items()
    }
    assert {m: n for m, n in lengths.items() if n > MODULE_MAX_LINES} == {}


def test_asset_and_sensor_functions_stay_under_about_60_lines() -> None:
    found: dict[str, int] = {}
    for package in ("assets", "sensors"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            found |= long_functions(path, FUNCTION_MAX_LINES)
    assert {k: n for k, n in found.items() if k not in LONG_FUNCTIONS_ALLOWED} == {}


def test_the_cli_reference_lists_every_command_and_its_options() -> None:
    """docs/cli.md has a section per `python -m pipelines.X` command naming each option its
    parser declares."""
    reference = (PROJECT_ROOT / "docs" / "cli.md").read_text()
    missing = []
    for path in sorted((PROJECT_ROOT / "pipelines").glob("*.py")):
        source = path.read_text()
        if 'if __name__ == "__main__":' not in source:
            continue
        heading = f"### `pipelines.{path.stem}`"
        if heading not in reference:
            missing.append(heading)
            continue
        section = reference.split(heading, 1)[1].split("\n### ", 1)[0]
        for node in ast.walk(ast.parse(source)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"
            ):
                flags = [a.value for a in node.args if isinstance(a, ast.Constant)]
                missing += [
                    f"{path.stem} {f}" for f in flags if f.startswith("--") and f not in section
                ]
    assert missing == []
