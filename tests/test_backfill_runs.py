"""A backfill of many days runs as several runs at once, through Dagster: with
$DRIFTLOOP_BACKFILL_DAYS_PER_RUN set, the daemon splits the range into runs of that many
days and the run queue starts them side by side within the instance's limit (two here).

Raw partitions are ingested first with the CLI's `--partition-range` (one run, the
single-run default), then `python -m pipelines.backfill` asks `dagster dev`'s webserver
for the raw days and the features of the range, as the UI's dialog does: exactly those
days, although the features' rolling windows map each raw day to the days after it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, RunRecord, RunsFilter
from e2e_helpers import dagster_dev, free_port, wait_for

from driftloop.data.lake import existing_partitions
from driftloop.data.replay import replay_days
from driftloop.paths import PROJECT_ROOT, dataset_paths
from pipelines import backfill
from pipelines.instance import write_instance

DAYS = 6
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
STARTING, SUCCESS = DagsterEventType.RUN_STARTING, DagsterEventType.RUN_SUCCESS


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_backfill_splits_into_runs_that_run_side_by_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, home = tmp_path / "data", write_instance(tmp_path / "dagster_home")
    paths = dataset_paths("flights", root)
    days = backfill.days_of(date(2013, 3, 1), date(2013, 3, DAYS))
    replay_days(paths, date(2013, 3, 1), DAYS)
    env = {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "DRIFTLOOP_REPLAY": "off",
        # The backfill alone builds the features: the automation would build them beside it.
        "DRIFTLOOP_AUTOMATION": "off",
    }
    dg = str(Path(sys.executable).with_name("dg"))
    command = [dg, "launch", "--assets", "flights/raw_data"]
    command += ["--partition-range", f"{days[0]}...{days[-1]}"]
    ingest = subprocess.run(
        command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert ingest.returncode == 0, ingest.stderr[-3000:]
    assert existing_partitions(paths.table("raw")) == days

    port = free_port()
    env["DRIFTLOOP_BACKFILL_DAYS_PER_RUN"] = "3"
    with dagster_dev(env, tmp_path / "dagster_dev.log", port):
        url = f"http://127.0.0.1:{port}"
        wait_for("the webserver", lambda: _up(url), timeout=300, every=2)
        # raw_data again (from what the ingest took in) with its features: a backfill that
        # took the days after the range too would fail there, with no raw data.
        backfill_id = backfill.launch(url, "flights", days, ("raw_data", "features"))
        assert backfill.wait(url, backfill_id, timeout=600) == "COMPLETED_SUCCESS"

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        records = [
            r
            for r in instance.get_run_records(RunsFilter.for_backfill(backfill_id))
            if "features" in {key.path[-1] for key in r.dagster_run.asset_selection or ()}
        ]
        launched = {r.dagster_run.run_id: _when(instance, r, STARTING) for r in records}
        ended = {r.dagster_run.run_id: _when(instance, r, SUCCESS) for r in records}
    ranges = sorted(
        (r.dagster_run.tags[RANGE_START], r.dagster_run.tags[RANGE_END]) for r in records
    )
    assert ranges == [(days[0], days[2]), (days[3], days[5])]
    assert existing_partitions(paths.table("features")) == days
    # Side by side: the queue let the second run go before the first one ended (when its
    # process gets going on a loaded machine is up to the machine).
    first, second = sorted(launched.items(), key=lambda item: item[1])
    assert second[1] < ended[first[0]], (launched, ended)


def _when(instance: DagsterInstance, record: RunRecord, kind: DagsterEventType) -> float:
    [event] = instance.all_logs(record.dagster_run.run_id, of_type=kind)
    return event.timestamp


def _up(url: str) -> bool:
    try:
        backfill.graphql(url, "{ version }", {})
    except OSError:
        return False
    return True
