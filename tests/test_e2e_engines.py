"""The loop end to end on the engines a deployment grows into: Dagster's instance on a real
PostgreSQL server and MLflow as a tracking server (PostgreSQL backend store, proxied
artifacts), both started by the fixtures in tests/engines.py.

The same loop as tests/test_e2e_loop.py (tests/e2e_helpers.py drives both); then the status
CLI and the endpoint read the champion through the server, and nothing of the run went to a
local store.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance
from e2e_helpers import (
    FIRST_BATCH_DAYS,
    dagster_dev,
    drive_the_loop,
    free_port,
    loop_environment,
    process_group,
    wait_for,
)
from engines import PostgresStack

from driftloop.data.replay import replay_days
from driftloop.paths import PROJECT_ROOT, dataset_paths


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_the_loop_runs_on_postgres_and_an_mlflow_server(
    tmp_path: Path, postgres_stack: PostgresStack
) -> None:
    root = tmp_path / "data"
    mlflow_uri = postgres_stack.mlflow_uri
    env = loop_environment(tmp_path, root, postgres_stack.home, **postgres_stack.env())
    replay_days(dataset_paths("flights", root), date(2013, 1, 1), FIRST_BATCH_DAYS)

    with dagster_dev(env, tmp_path / "dagster_dev.log", free_port()):
        instance = DagsterInstance.get()
        try:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
            drive_the_loop(instance, root, mlflow_uri)
        finally:
            instance.dispose()

    # The status CLI reads the registry through the tracking server.
    status = subprocess.run(
        [sys.executable, "-m", "pipelines.status", "--dataset", "flights", "--json"],
        cwd=PROJECT_ROOT,
        env={**env, "MLFLOW_TRACKING_URI": mlflow_uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert status.returncode == 0, status.stderr[-3000:]
    champion = json.loads(status.stdout)["registry"]["champion"]
    assert champion and str(champion["version"]) in {"1", "2"}
    # The endpoint loads the champion through the server's registry and artifact proxy.
    port = free_port()
    serve = [sys.executable, "-m", "pipelines.serve", "--dataset", "flights", "--port", str(port)]
    with process_group(serve, env, tmp_path / "serve.log"):
        ready = wait_for(
            "the endpoint's champion",
            lambda: _json(f"http://127.0.0.1:{port}/ready"),
            timeout=300,
            every=2,
        )
    assert str(ready["model_version"]) == str(champion["version"]), ready
    # Every model went through the server: no local MLflow store, artifacts in the server's.
    assert not (root / "mlflow.db").exists() and not (root / "mlartifacts").exists()
    assert any((tmp_path / "mlflow-artifacts").rglob("MLmodel"))
    # Dagster kept nothing of its runs in SQLite files under its home.
    assert not list(postgres_stack.home.rglob("*.db"))


def _json(url: str) -> dict | None:
    """The JSON body of a 200 answer, else None (not up yet, or not ready: 503)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.load(response)
    except OSError:
        return None
