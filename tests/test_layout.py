"""The layout's rules, read from the source: the layer contracts, a framework-free core, no
import circles, no private imports across modules, short asset, sensor and Dagster
definition functions."""

from __future__ import annotations

import ast
import functools
import logging
import os
import subprocess
import sys
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
    # import-linter configures logging with disable_existing_loggers: the loggers of the
    # tests that run after this one (caplog on driftloop.alerts) must keep working.
    loggers = [v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)]
    disabled = {logger: logger.disabled for logger in loggers}
    try:
        assert lint_imports(no_cache=True, no_logo=True) == 0
    finally:
        for logger, was in disabled.items():
            logger.disabled = was


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


FUNCTION_MAX_LINES = 60
# The decorators that make a function the body of a Dagster definition.
DAGSTER_DEFINITIONS = {
    "asset",
    "multi_asset",
    "graph_asset",
    "asset_check",
    "multi_asset_check",
    "op",
    "graph",
    "job",
    "sensor",
    "asset_sensor",
    "multi_asset_sensor",
    "run_status_sensor",
    "run_failure_sensor",
    "schedule",
}


def decorator_name(node: ast.expr) -> str:
    """`asset` for `@asset`, `@asset(...)` and `@dg.asset(...)`."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def long_functions(
    path: Path, limit: int, root: Path = PROJECT_ROOT, *, definitions_only: bool = False
) -> dict[str, int]:
    """`file::name` -> lines, for every function (nested ones too) over `limit` lines; with
    `definitions_only`, only the bodies of Dagster definitions (`@asset`, `@op`, ...)."""
    found = {}
    for node in ast.walk(parsed(path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if definitions_only and not any(
                decorator_name(d) in DAGSTER_DEFINITIONS for d in node.decorator_list
            ):
                continue
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


def test_the_long_function_finder_picks_out_dagster_definitions(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(4))
    source = tmp_path / "sample.py"
    source.write_text(
        f"@dg.op(name='a')\ndef step():\n{body}\n\n\n@asset\ndef table():\n{body}\n\n\n"
        f"@functools.cache\ndef helper():\n{body}\n"
    )
    assert long_functions(source, limit=4, root=tmp_path, definitions_only=True) == {
        "sample.py::step": 5,
        "sample.py::table": 5,
    }


def test_asset_and_sensor_functions_stay_under_about_60_lines() -> None:
    """Every function in assets/ and sensors/, and the body of every Dagster definition
    wherever it is (a job's op in pipelines/, say): one core call and its metadata."""
    found: dict[str, int] = {}
    for module, path in project_modules().items():
        everything = module.split(".")[0] in ("assets", "sensors")
        found |= long_functions(path, FUNCTION_MAX_LINES, definitions_only=not everything)
    assert found == {}


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


# Libraries the code location must not load: every run worker and code server imports it.
HEAVY_LIBRARIES = (
    "numpy",
    "pandas",
    "pyarrow",
    "mlflow",
    "sklearn",
    "lightgbm",
    "evidently",
    "scipy",
    "fastapi",
)


@pytest.mark.slow
def test_loading_the_code_location_imports_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys, pipelines.definitions; "
        f"print(','.join(m for m in {HEAVY_LIBRARIES!r} if m in sys.modules))"
    )
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""
