"""End to end, as a user runs it: `dagster dev` (real webserver and daemon) drives the loop
on the single-machine default (Dagster on SQLite, MLflow on a SQLite file).

Days of flights land in the landing zone; the sensors ingest and score them, the first
champion is trained and gated by a sensor-launched run, drift reports appear, and a
persistent drift breach launches a retraining run whose challenger meets the gate
(tests/e2e_helpers.py, shared with the PostgreSQL and MLflow-server run in
tests/test_e2e_engines.py).
"""

from __future__ import annotations

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
)

from driftloop.data.replay import replay_days
from driftloop.paths import dataset_paths
from pipelines.instance import write_instance


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_loop_runs_itself_under_the_daemon(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "data"
    home = write_instance(tmp_path / "dagster_home")  # the project's instance settings
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = loop_environment(tmp_path, root, home, MLFLOW_TRACKING_URI=tracking_uri)
    replay_days(dataset_paths("flights", root), date(2013, 1, 1), FIRST_BATCH_DAYS)

    log = tmp_path / "dagster_dev.log"
    with dagster_dev(env, log, free_port()):
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = DagsterInstance.get()
        try:
            drive_the_loop(instance, root, tracking_uri)
        finally:
            instance.dispose()
    console = log.read_text()
    assert "the Dagster UI is up at http://127.0.0.1:" in console
    assert " - DEBUG - " not in console  # pipelines.dev keeps DEBUG event lines out
