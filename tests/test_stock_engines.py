"""Stock Dagster and MLflow: no project file subclasses a Dagster storage class, run
launcher or coordinator, or imports from a private Dagster or MLflow module path."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

from driftloop.paths import PROJECT_ROOT

FOLDERS = ("driftloop", "assets", "resources", "sensors", "pipelines", "benchmarks", "tests")
ENGINE_BASES = ("Storage", "ComputeLogManager", "RunLauncher", "RunCoordinator")


@functools.cache
def _modules() -> dict[Path, ast.Module]:
    files = [f for folder in FOLDERS for f in sorted((PROJECT_ROOT / folder).rglob("*.py"))]
    return {f.relative_to(PROJECT_ROOT): ast.parse(f.read_text()) for f in files}


def _private_imports(tree: ast.Module) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] in ("dagster", "mlflow") and any(p.startswith("_") for p in parts[1:]):
                found.add(node.module if isinstance(node, ast.ImportFrom) else name)
    return found


def test_no_project_file_subclasses_a_dagster_engine_class() -> None:
    subclasses = [
        f"{path}: class {node.name}"
        for path, tree in _modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        for base in node.bases
        if ast.unparse(base).split(".")[-1].endswith(ENGINE_BASES)
    ]
    assert not subclasses, subclasses


def test_the_private_import_finder_reads_dotted_segments() -> None:
    tree = ast.parse(
        "from dagster._core.storage import tags\nimport mlflow.tracking._x\n"
        "from dagster import asset\nimport mlflow.pyfunc\n"
    )
    assert _private_imports(tree) == {"dagster._core.storage", "mlflow.tracking._x"}


def test_no_file_imports_a_private_dagster_or_mlflow_module() -> None:
    found = sorted(
        f"{path}: {module}"
        for path, tree in _modules().items()
        for module in _private_imports(tree)
    )
    assert not found, found
