"""A store file that is corrupted or belongs to something else gets a clear error, not a
database driver's traceback: which store, what is wrong, and the command that recovers.

Checked before a SQLite store is first used in a process (MLflow's tracking and registry
database, a Dagster instance's SQLite files). A missing or empty file is a new store and
passes; stores on a server (PostgreSQL, an MLflow server) report their own errors.
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path


class StoreError(RuntimeError):
    """A store that cannot be used as it is; the message names it and the way out."""


def sqlite_tables(database: Path) -> set[str] | None:
    """The table names of a SQLite file, None for a missing or empty file.

    Raises sqlite3.DatabaseError when the file is not a readable SQLite database."""
    if not database.exists() or database.stat().st_size == 0:
        return None
    con = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        con.execute("PRAGMA quick_check(1)").fetchall()
    finally:
        con.close()
    return {name for (name,) in rows}


def check_sqlite_store(database: Path, what: str, required: set[str], recover: str) -> None:
    """StoreError unless `database` is missing, empty, or a SQLite file with `required` tables."""
    try:
        tables = sqlite_tables(database)
    except sqlite3.DatabaseError as error:
        raise StoreError(
            f"{what} {database} is not a readable SQLite database ({error}): it is corrupted "
            f"or was overwritten. To recover: {recover}"
        ) from None
    if tables is None:
        return
    missing = sorted(required - tables)
    if missing:
        raise StoreError(
            f"{what} {database} is a SQLite database without the tables {missing} that it "
            f"needs: it belongs to something else. To recover: {recover}"
        )


def check_mlflow_store(tracking_uri: str) -> None:
    """Check MLflow's SQLite store (a no-op for other URIs)."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    check_sqlite_store(
        database,
        "the MLflow store",
        {"alembic_version", "experiments"},
        f"restore it from a backup; or move it aside (mv {database} {database}.broken), "
        "let the next retrain register a first model in a new store, and record that it "
        "replaces the old one with `python -m pipelines.reconcile --dataset NAME "
        "--adopt-store`",
    )


# A Dagster instance's SQLite files under DAGSTER_HOME, with a table each must hold.
DAGSTER_SQLITE_FILES = {
    "history/runs.db": {"runs"},
    "history/runs/index.db": {"event_logs"},
    "schedules/schedules.db": {"jobs"},
}


def check_dagster_home(home: Path) -> None:
    """Check a Dagster instance's SQLite storage under `home` (absent files pass)."""
    for relative, tables in DAGSTER_SQLITE_FILES.items():
        check_sqlite_store(
            home / relative,
            "the Dagster instance's storage",
            tables,
            f"restore {home} from a backup; or move the file aside (mv {home / relative} "
            f"{home / relative}.broken) and start again (`python -m pipelines.dev`): run "
            "history and sensor cursors start empty, the lake and MLflow are untouched",
        )


def exit_code(command: Callable[[], int]) -> int:
    """A command's exit code, with a store it cannot use reported as one line naming the
    store, the problem and the recovering command (exit 2) instead of a traceback."""
    try:
        return command()
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
