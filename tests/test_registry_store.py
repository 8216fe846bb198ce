"""Several processes opening a fresh SQLite MLflow store at once all succeed."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from driftloop.registry import make_client


def _open_store(uri: str) -> None:
    make_client(uri).search_registered_models()


def test_concurrent_first_use_of_a_sqlite_store(tmp_path: Path) -> None:
    # A run and a sensor did this for real: "table ... already exists" failed the run.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_open_store, args=(uri,)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0, 0]
