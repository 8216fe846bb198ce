"""Real engines for tests: a PostgreSQL server (Debian's package) and an MLflow tracking
server with a PostgreSQL backend store and proxied artifacts, each on a free loopback port.

PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user
(`runuser`) in a temporary folder that user owns; it is stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_helpers import free_port, process_group, wait_for

from pipelines.instance import libpq_url


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server reachable as the `postgres` user without a password."""

    port: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        """The database's URL for SQLAlchemy (Dagster, MLflow), naming the psycopg2 driver."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str) -> str:
        """A new empty database (named `prefix` plus a random suffix); returns its URL."""
        import psycopg2

        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        connection = psycopg2.connect(libpq_url(self.url()))
        connection.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


def postgres_bindir() -> Path:
    """The folder of initdb and pg_ctl (not on PATH in Debian's package): pg_config's
    answer, else the newest /usr/lib/postgresql/<version>/bin."""
    candidates = []
    if shutil.which("pg_config"):
        answer = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        candidates.append(Path(answer.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists():
            return folder
    raise RuntimeError(
        "PostgreSQL's server is not installed (no initdb): "
        "apt-get install -y postgresql (.ci/run does this)"
    )


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """initdb in a new folder, start on a free loopback port, stop and remove at the end."""
    bindir = postgres_bindir()
    # Not under pytest's tmp folders: those are private to root, and the server's user
    # must be able to reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix="driftloop-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()
    run = {"check": True, "capture_output": True, "text": True, "timeout": 300}
    # fsync off: a test database need not survive a power cut, and it saves disk waits.
    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options]
    start += ["-l", str(folder / "server.log"), "-w", "-t", "120", "start"]
    try:
        subprocess.run(_as_postgres([*initdb, "-E", "UTF8", "--no-sync"]), **run)
        subprocess.run(_as_postgres(start), **run)
        yield Postgres(port=port, folder=folder)
    except subprocess.CalledProcessError as error:
        log = folder / "server.log"
        detail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"PostgreSQL failed: {error.stderr}\n{detail}") from error
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
                timeout=120,
            )
        shutil.rmtree(folder, ignore_errors=True)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def mlflow_server(backend_uri: str, artifacts: Path, log_path: Path) -> Iterator[str]:
    """`mlflow server` on a free loopback port with that backend store, serving (proxying)
    the artifacts kept in `artifacts`; yields its tracking URI."""
    port = free_port()
    mlflow = str(Path(sys.executable).with_name("mlflow"))
    args = [
        mlflow,
        "server",
        "--backend-store-uri",
        backend_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with process_group(args, env, log_path) as process:
        uri = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"mlflow server exited: {log_path.read_text()[-3000:]}")
            return _answers(f"{uri}/health")

        wait_for("the MLflow server", up, timeout=300, every=1)
        yield uri


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the session; each test makes its own databases."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def mlflow_tracking_server(postgres: Postgres, tmp_path: Path) -> Iterator[str]:
    """A fresh MLflow tracking server (its own database and artifact folder) for one test."""
    backend = postgres.create_database("mlflow")
    started = time.monotonic()
    with mlflow_server(backend, tmp_path / "mlflow-artifacts", tmp_path / "mlflow.log") as uri:
        print(f"MLflow server at {uri} up in {time.monotonic() - started:.0f} s")
        yield uri
