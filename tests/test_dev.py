"""`python -m pipelines.dev` refuses clearly before starting Dagster (a taken port, a
PostgreSQL server that does not answer) and, on SIGTERM, stops Dagster and every process
it started before it exits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

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


def _ours(marker: str) -> set[int]:
    """Running processes whose environment holds `marker` (zombies are not running)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and marker.encode() in environ:
            found.add(int(proc.name))
    return found


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigterm_stops_dagster_and_leaves_no_process_behind(tmp_path: Path) -> None:
    from e2e_helpers import free_port, wait_for

    data = tmp_path / "data"
    marker = f"DRIFTLOOP_DATA_DIR={data}"
    env = {**os.environ, "DRIFTLOOP_DATA_DIR": str(data), "DRIFTLOOP_REPLAY": "off"}
    env.pop("DAGSTER_HOME", None)
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    dev = subprocess.Popen(
        [sys.executable, "-m", "pipelines.dev", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:

        def up() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                    return True
            except OSError:
                return False

        wait_for("the Dagster UI", up, timeout=180, every=1)
        # The webserver, the daemon and a code server run beside pipelines.dev.
        wait_for("Dagster's processes", lambda: len(_ours(marker)) >= 4, timeout=60, every=1)
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=120)  # it exits once Dagster has stopped (TimeoutExpired if not)
    finally:
        if dev.poll() is None:
            dev.kill()
        log.close()
    assert _ours(marker) == set(), (tmp_path / "dev.log").read_text()[-3000:]
