"""The project's Dagster instance: a DAGSTER_HOME under the data root with deploy/'s settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.paths import PROJECT_ROOT, data_root

if TYPE_CHECKING:
    from dagster import DagsterInstance

DEPLOY_DIR = PROJECT_ROOT / "deploy"
SQLITE_INSTANCE = DEPLOY_DIR / "dagster.yaml"
POSTGRES_INSTANCE = DEPLOY_DIR / "postgres" / "dagster.yaml"
POSTGRES_URL_ENV = "DAGSTER_POSTGRES_URL"  # named by deploy/postgres/dagster.yaml


def sqlalchemy_url(url: str) -> str:
    """`url` naming the installed driver (psycopg2): SQLAlchemy 2.1, which Dagster and MLflow
    connect through, reads a bare postgresql:// as psycopg 3, which is not installed."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg2://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def libpq_url(url: str) -> str:
    """`url` as libpq (psycopg2.connect, psql) reads it: without a +driver suffix."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


# The single-machine instance's settings (stock SQLite storage), as written into a new home.
DAGSTER_YAML = SQLITE_INSTANCE.read_text()


def instance_yaml(postgres: bool = False, max_concurrent_runs: int | None = None) -> str:
    """deploy/'s instance file, optionally with another limit of concurrent runs."""
    text = (POSTGRES_INSTANCE if postgres else SQLITE_INSTANCE).read_text()
    if max_concurrent_runs is None:
        return text
    import yaml

    settings = yaml.safe_load(text)
    settings["concurrency"]["runs"]["max_concurrent_runs"] = max_concurrent_runs
    return yaml.safe_dump(settings, sort_keys=False)


def write_instance(home: Path, postgres: bool = False, **changes: int | None) -> Path:
    """A DAGSTER_HOME at `home` with deploy/'s instance file (replacing any there)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(instance_yaml(postgres, **changes))
    return home


def project_dagster_home(root: Path | None = None, postgres: bool = False) -> Path:
    """$DAGSTER_HOME if set, else <data root>/dagster_home (dagster_home_postgres on
    PostgreSQL); a home without a dagster.yaml gets deploy/'s instance file."""
    raw = os.environ.get("DAGSTER_HOME")
    folder = "dagster_home_postgres" if postgres else "dagster_home"
    home = Path(raw).expanduser().resolve() if raw else (root or data_root()) / folder
    if not (home / "dagster.yaml").exists():
        write_instance(home, postgres)
    return home


@contextmanager
def instance_at(home: Path) -> Iterator[DagsterInstance]:
    """The Dagster instance of the DAGSTER_HOME `home` (read from another process's home).

    DAGSTER_HOME points at `home` while it is open, as in every process Dagster itself
    starts (the local compute log and artifact folders resolve against it)."""
    from dagster import DagsterInstance

    from driftloop.stores import check_dagster_home

    check_dagster_home(home)
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
