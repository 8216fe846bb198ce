"""`python -m pipelines.dev` refuses clearly before starting Dagster: a taken port, a
PostgreSQL server that does not answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from driftloop.paths import PROJECT_ROOT


def _dev(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(tmp_path / "data")}
    env.pop("DAGSTER_HOME", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.dev", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_taken_port_stops_it_with_a_message_naming_the_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _dev(tmp_path, "--port", str(port))
    assert done.returncode == 2
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr
    assert f"--port {port + 1}" in done.stderr
    assert not (tmp_path / "data" / "dagster_home").exists()  # nothing was started


def test_an_unreachable_postgres_stops_it_before_dagster_starts(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    url = f"postgresql://postgres@127.0.0.1:{closed}/dagster"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    done = _dev(tmp_path, "--port", str(free), "--postgres", url)
    assert done.returncode == 2
    assert f"cannot connect to PostgreSQL at {url}" in done.stderr
    assert "dagster_home_postgres" not in done.stdout


def test_the_console_never_shows_the_database_password() -> None:
    from pipelines.dev import without_password

    url = "postgresql+psycopg2://driftloop:s3cret@127.0.0.1:5432/dagster"
    assert without_password(url) == "postgresql+psycopg2://driftloop:***@127.0.0.1:5432/dagster"
    assert (
        without_password("postgresql://postgres@127.0.0.1/x") == "postgresql://postgres@127.0.0.1/x"
    )
