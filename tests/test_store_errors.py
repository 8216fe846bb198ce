"""A corrupted or foreign store gets a clear error from status and reconcile: which store,
what is wrong, and the command that recovers (driftloop/stores.py)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from driftloop.stores import StoreError, check_dagster_home, check_mlflow_store
from pipelines import reconcile, status
from pipelines.instance import write_instance


def _corrupt(path: Path) -> None:
    """Overwrite the file's first bytes (the SQLite header), as a stray write would."""
    with path.open("r+b") as handle:
        handle.write(b"\x00garbage" * 64)


def _foreign(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE invoices (id INTEGER)")
    con.commit()
    con.close()


def test_a_corrupted_mlflow_store_names_itself_and_the_way_out(
    data_root: Path, capsys: pytest.CaptureFixture
) -> None:
    database = data_root / "mlflow.db"
    _foreign(database)  # any SQLite file, then its header overwritten
    _corrupt(database)
    for command in (status, reconcile):
        code = command.main(["--dataset", "flights", "--data-dir", str(data_root)])
        error = capsys.readouterr().err
        assert code == 2, error
        assert f"the MLflow store {database} is not a readable SQLite database" in error
        assert "--adopt-store" in error and "Traceback" not in error


def test_a_foreign_mlflow_store_is_named_as_such(tmp_path: Path) -> None:
    database = tmp_path / "other.db"
    _foreign(database)
    with pytest.raises(StoreError, match="belongs to something else"):
        check_mlflow_store(f"sqlite:///{database}")
    check_mlflow_store(f"sqlite:///{tmp_path / 'new.db'}")  # a new store passes


def test_a_corrupted_dagster_store_names_itself(tmp_path: Path, empty_dagster_home: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(empty_dagster_home, home)
    write_instance(home)
    check_dagster_home(home)
    _corrupt(home / "history" / "runs.db")
    with pytest.raises(StoreError) as caught:
        check_dagster_home(home)
    message = str(caught.value)
    assert "the Dagster instance's storage" in message and "runs.db" in message
    assert "python -m pipelines.dev" in message
