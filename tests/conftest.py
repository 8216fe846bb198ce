"""Shared fixtures: a fresh data root, MLflow store and Dagster instance per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, instance_for_test
from engines import (  # noqa: F401  (fixtures: real engines)
    mlflow_tracking_server,
    postgres,
    postgres_stack,
)

from driftloop.data.contract import Contract, load_contract
from driftloop.paths import PROJECT_ROOT, DatasetPaths, dataset_paths

FLIGHTS_CONTRACT = PROJECT_ROOT / "contracts" / "flights.yaml"
# Compiling a model version's trees is a gcc build of seconds: the tests of the compiled
# form switch it on (tests/test_edge_export.py, tests/test_stream.py); the rest score with
# LightGBM's predict, which gives the same scores.
os.environ.setdefault("DRIFTLOOP_COMPILED", "off")


@pytest.fixture
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary DRIFTLOOP_DATA_DIR and MLFLOW_TRACKING_URI for this test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("DRIFTLOOP_DATA_DIR", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return root


@pytest.fixture
def flights_contract() -> Contract:
    return load_contract(FLIGHTS_CONTRACT)


@pytest.fixture
def flights_paths(data_root: Path) -> DatasetPaths:
    return dataset_paths("flights", data_root)


@pytest.fixture(scope="session")
def empty_dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An instance's storage as a new instance creates it, made once per session: creating
    the SQLite schemas is most of what opening a test instance costs."""
    home = tmp_path_factory.mktemp("empty_dagster_home")
    with instance_for_test(temp_dir=str(home)):
        pass
    return home


@pytest.fixture
def dagster_instance(tmp_path: Path, empty_dagster_home: Path) -> Iterator[DagsterInstance]:
    """A real Dagster instance with its storage in a temporary DAGSTER_HOME of its own (a
    copy of the empty storage; its configuration names this folder's databases)."""
    home = tmp_path / "dagster_home"
    shutil.copytree(empty_dagster_home, home)
    with instance_for_test(temp_dir=str(home)) as instance:
        assert Path(instance.root_directory) == home
        yield instance
