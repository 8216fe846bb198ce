"""Real engines for tests: a PostgreSQL server (Debian's package), an MLflow tracking
server with a PostgreSQL backend store and proxied artifacts, and a Redis server (Debian's
`redis-server`, a Celery broker), each on a free loopback port; and Celery workers of
dagster-celery on that broker.

PostgreSQL refuses to run as root, so as root its programs run as the `postgres` user
(`runuser`) in a temporary folder that user owns; it is stopped and removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_helpers import free_port, process_group, wait_for

from driftloop.paths import PROJECT_ROOT
from pipelines.instance import POSTGRES_URL_ENV, libpq_url, write_instance

CELERY_CONFIG = PROJECT_ROOT / "deploy" / "celery" / "executor.yaml"


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

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut), keeping its data."""
        _pg_ctl(postgres_bindir(), self.folder, ["-m", "fast", "stop"])

    def start(self) -> None:
        """Start the stopped server again on the same port and data."""
        _pg_ctl(postgres_bindir(), self.folder, _start_args(self.folder, self.port))


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


def _start_args(folder: Path, port: int) -> list[str]:
    # fsync off: a test database need not survive a power cut, and it saves disk waits.
    options = f"-k {folder} -p {port} -c listen_addresses=127.0.0.1 -c fsync=off"
    return ["-o", options, "-l", str(folder / "server.log"), "-w", "-t", "120", "start"]


def _pg_ctl(bindir: Path, folder: Path, args: list[str]) -> None:
    command = [str(bindir / "pg_ctl"), "-D", str(folder / "data"), *args]
    subprocess.run(_as_postgres(command), check=True, capture_output=True, text=True, timeout=300)


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
    initdb = [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]
    try:
        subprocess.run(_as_postgres([*initdb, "-E", "UTF8", "--no-sync"]), **run)
        _pg_ctl(bindir, folder, _start_args(folder, port))
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


@contextmanager
def redis_server(log_path: Path | None = None) -> Iterator[str]:
    """Debian's `redis-server` on a free loopback port, keeping nothing on disk; yields its
    URL (redis://127.0.0.1:PORT, database 0; a database number may be appended as the path,
    /0, /1). Its log goes to `log_path`, else to a temporary folder removed at the end."""
    import redis

    if log_path is None:
        with (
            tempfile.TemporaryDirectory(prefix="driftloop-redis-") as folder,
            redis_server(Path(folder) / "redis.log") as url,
        ):
            yield url
        return

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not installed: apt-get install -y redis-server (tests/run.sh does)"
        )
    port = free_port()
    # No snapshots and no append-only file: a test's broker need not survive a restart.
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    args += ["--appendonly", "no", "--dir", str(log_path.parent)]
    with process_group(args, dict(os.environ), log_path, stop=signal.SIGTERM) as process:
        url = f"redis://127.0.0.1:{port}"

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"redis-server exited: {log_path.read_text()[-3000:]}")
            try:
                return bool(redis.Redis.from_url(url, socket_timeout=2).ping())
            except redis.ConnectionError:
                return False

        wait_for("the Redis server", up, timeout=60, every=0.2)
        yield url


@contextmanager
def celery_workers(names: tuple[str, ...], env: dict[str, str], logs: Path) -> Iterator[None]:
    """dagster-celery workers started side by side, one pool process each, ready to take
    steps. `env` names the broker and the instance (deploy/celery/executor.yaml); the code
    location is imported before the pool forks, so each step starts with it loaded."""
    bindir = Path(sys.executable).parent  # `dagster-celery` starts `celery` from PATH
    env = {**env, "PATH": f"{bindir}{os.pathsep}{env.get('PATH', '')}"}
    with ExitStack() as stack:
        started = {}
        for name in names:
            args = [str(bindir / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"]
            args += ["-y", str(CELERY_CONFIG), "-n", name, "-i", "pipelines.definitions"]
            args += ["--", "--concurrency", "1"]
            log = logs / f"worker-{name}.log"
            process = stack.enter_context(process_group(args, env, log, stop=signal.SIGTERM))
            started[name] = (process, log)

        def ready() -> bool:
            for name, (process, log) in started.items():
                if process.poll() is not None:
                    raise AssertionError(f"worker {name} exited: {log.read_text()[-3000:]}")
            return all(" ready." in log.read_text(errors="replace") for _, log in started.values())

        wait_for("the Celery workers", ready, timeout=300, every=1)
        yield


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


@dataclass(frozen=True)
class PostgresStack:
    """A new Dagster instance on the session's PostgreSQL server (its own database) and an
    MLflow tracking server: what a test on the deployment's engines starts from."""

    home: Path
    database: str
    mlflow_uri: str

    def env(self) -> dict[str, str]:
        """The variables a child process needs to use this instance and tracking server."""
        return {
            "DAGSTER_HOME": str(self.home),
            POSTGRES_URL_ENV: self.database,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
        }


@pytest.fixture
def postgres_stack(
    postgres: Postgres, mlflow_tracking_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> PostgresStack:
    """The instance's home (deploy/postgres/dagster.yaml) and database, also set in this
    process's environment, and the tracking server's URI."""
    home = write_instance(tmp_path / "dagster_home", postgres=True)
    database = postgres.create_database("dagster")
    monkeypatch.setenv(POSTGRES_URL_ENV, database)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return PostgresStack(home, database, mlflow_tracking_server)
