"""The daily path heals itself under the real daemon (`dagster dev`, the instance on a
PostgreSQL server), with no new file landed: runs killed with SIGKILL at each step, and the
instance's store unavailable for 60 s during a daily run, both end with every landed day's
features, predictions, drift and performance current within five minutes.

The lake starts in steady state (18 days ingested, featurized, scored by a promoted
champion and recorded in the instance: benchmarks/cases/loop_latency.py). One day lands;
the runs that follow it die once at each fault point (`DRIFTLOOP_FAULT=<point>:once`, the
process kills itself with SIGKILL as `kill -9` would): the automation's daily run after
features, its retry after predictions, the next after the drift report, and the catch-up's
run after the performance of the day whose labels the new day made due. The reconcile
sensor fails each dead run; Dagster's automation (assets/automation.py) and the catch-up
sensor request the days again. Then a second day lands, and PostgreSQL is stopped for 60 s
as soon as its daily run has started; once it is back, the failed run is requested again.
One daemon serves every case; sensors and the automation tick every 3 s.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterRunStatus, RunsFilter
from e2e_helpers import dagster_dev, free_port, wait_for
from engines import Postgres

from benchmarks.cases.loop_latency import (
    FIRST_DAY,
    QUICK_HISTORY_DAYS,
    prepare_steady_state,
    record_steady_state,
)
from benchmarks.cases.loop_latency import contracts_dir as quiet_contracts
from driftloop.data.contract import load_contract
from driftloop.data.lake import existing_partitions
from driftloop.data.replay import replay_days
from driftloop.monitoring.drift_outcome import summary_path
from driftloop.monitoring.signals import data_clock, labels_due
from driftloop.paths import DatasetPaths, dataset_paths
from pipelines.instance import POSTGRES_URL_ENV, instance_at, write_instance

POINTS = ("daily_features", "daily_predictions", "daily_drift", "daily_performance")
CHAIN = ("raw_data", "features", "predictions", "drift_report")
OUTAGE_SECONDS = 60
RECOVERY_LIMIT = 300  # the acceptance bound: every day current within five minutes
ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def _newest(instance, name: str) -> dict[str, int]:
    """The storage id of each partition's newest materialization of flights/<name>."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["flights", name])), limit=10_000
    ).records
    newest: dict[str, int] = {}
    for record in records:
        day = record.partition_key
        newest[day] = max(newest.get(day, 0), record.storage_id)
    return newest


def _stale(
    instance, paths: DatasetPaths, contract_path: Path, landed: tuple[str, ...] = ()
) -> list[str]:
    """'<asset> <day>' for each day's daily asset whose newest materialization is missing or
    older than its input's, and performance for the days whose labels are due; the days
    `landed` by the test must also have their files. Empty when everything is current."""
    contract = load_contract(contract_path)
    days = existing_partitions(paths.table("raw"))
    clock = data_clock(contract, paths)
    newest = {name: _newest(instance, name) for name in (*CHAIN, "performance")}
    stale = []
    for day in days:
        for upstream, name in pairwise(CHAIN):
            if newest[name].get(day, 0) <= newest[upstream].get(day, 0):
                stale.append(f"{name} {day}")
        if day in landed and not paths.partition_file("predictions", day).exists():
            stale.append(f"predictions file {day}")
        if day in landed and not summary_path(paths, day).exists():
            stale.append(f"drift summary {day}")
        if labels_due(contract, day, clock) and (
            not paths.partition_file("performance", day).exists()
            or newest["performance"].get(day, 0) <= newest["predictions"].get(day, 0)
        ):
            stale.append(f"performance {day}")
    return stale


def _quiet(instance) -> bool:
    return not instance.get_runs(RunsFilter(statuses=ACTIVE), limit=1)


def _state(
    instance, paths: DatasetPaths, contract_path: Path, landed: tuple[str, ...], log: Path
) -> str:
    """What a timed-out wait leaves behind: the stale items, the newest 40 runs with their
    status and partition (or first day of their range), and the end of the daemon's log."""
    runs = [
        f"{r.dagster_run.job_name} {r.dagster_run.status.value} "
        f"{r.dagster_run.tags.get('dagster/partition', '')}"
        f"{r.dagster_run.tags.get('dagster/asset_partition_range_start', '')} "
        f"{r.dagster_run.run_id[:8]}"
        for r in instance.get_run_records(limit=40)
    ]
    return (
        f"stale: {_stale(instance, paths, contract_path, landed)}; runs (newest first): {runs}; "
        f"daemon log: {log.read_text()[-4000:]}"
    )


def _started_daily_run(instance, day: str) -> str | None:
    """The run that builds `day` from its features (the ingest run's daily run, or the
    automation's), once it has started."""
    runs = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
    for record in runs:
        run = record.dagster_run
        first = run.tags.get("dagster/partition") or run.tags.get(
            "dagster/asset_partition_range_start"
        )
        last = run.tags.get("dagster/asset_partition_range_end", first)
        # The ingest run's daily run executes the whole daily job (no asset selection).
        selected = {key.path[-1] for key in run.asset_selection or ()}
        daily = run.job_name == "flights_daily" or "features" in selected
        if first and first <= day <= last and daily:
            return run.run_id
    return None


@pytest.fixture
def environment(
    tmp_path: Path, postgres: Postgres, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[dict[str, str], Path]]:
    root = tmp_path / "data"
    contracts = quiet_contracts(tmp_path)
    prepare_steady_state(root, contracts, QUICK_HISTORY_DAYS)
    url = postgres.create_database("faults")
    monkeypatch.setenv(POSTGRES_URL_ENV, url)  # the instance file names it
    home = write_instance(tmp_path / "dagster_home", postgres=True)
    record_steady_state(home, QUICK_HISTORY_DAYS)
    env = {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "DRIFTLOOP_CONTRACTS_DIR": str(contracts),
        "DRIFTLOOP_REPLAY": "off",
        "DRIFTLOOP_NEW_DATA_SENSOR_SECONDS": "3",
        "DRIFTLOOP_AUTOMATION_SECONDS": "3",
        "DRIFTLOOP_RECONCILE_SENSOR_SECONDS": "3",
        "DRIFTLOOP_CATCH_UP_SENSOR_SECONDS": "3",
        "DRIFTLOOP_FAULT": ",".join(f"{p}:once" for p in POINTS),
    }
    yield env, home


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_daily_runs_killed_at_each_step_and_a_store_outage_heal_without_new_data(
    environment: tuple[dict[str, str], Path], postgres: Postgres, tmp_path: Path
) -> None:
    env, home = environment
    root = Path(env["DRIFTLOOP_DATA_DIR"])
    contract_path = Path(env["DRIFTLOOP_CONTRACTS_DIR"]) / "flights.yaml"
    paths = dataset_paths("flights", root)
    first = FIRST_DAY + timedelta(days=QUICK_HISTORY_DAYS)
    log = tmp_path / "dagster_dev.log"
    with dagster_dev(env, log, free_port()), instance_at(home) as instance:
        wait_for(
            "the sensor daemon",
            lambda: "Checking for new runs for sensor: flights_new_data" in log.read_text(),
            timeout=300,
            every=1,
        )
        assert _stale(instance, paths, contract_path) == []

        # Kills: one day lands; a run dies at each of the four steps.
        landed, landed_at, landed_days = time.monotonic(), time.time(), (first.isoformat(),)
        replay_days(paths, first, 1)
        fired = [root / "faults" / f"{p}.fired" for p in POINTS]
        wait_for("a run killed at each step", lambda: all(f.exists() for f in fired), 900)
        kill_times = {f.stem: round(f.stat().st_mtime - landed_at, 1) for f in fired}
        wait_for(
            f"{first} and the days it made due current",
            lambda: not _stale(instance, paths, contract_path, landed_days) and _quiet(instance),
            timeout=RECOVERY_LIMIT,
            explain=lambda: _state(instance, paths, contract_path, landed_days, log),
        )
        kills = time.monotonic() - landed
        runs = [r.dagster_run for r in instance.get_run_records()]
        killed = [r for r in runs if r.status == DagsterRunStatus.FAILURE]
        # Each killed run was ended as failed (by the code server that started it, or the
        # reconcile sensor), none left STARTED.
        assert len(killed) >= len(POINTS), [(r.job_name, r.status) for r in runs]

        # The store: the second day's daily run starts, then PostgreSQL stops for 60 s.
        second = first + timedelta(days=1)
        landed_days = (*landed_days, second.isoformat())
        replay_days(paths, second, 1)
        hit = wait_for(
            f"the daily run of {second}",
            lambda: _started_daily_run(instance, second.isoformat()),
            timeout=600,
            every=0.2,
        )
        postgres.stop()
        stopped = time.monotonic()
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        postgres.start()
        back = time.monotonic()
        wait_for(
            f"{second} current after the outage",
            lambda: not _stale(instance, paths, contract_path, landed_days) and _quiet(instance),
            timeout=RECOVERY_LIMIT,
            explain=lambda: _state(instance, paths, contract_path, landed_days, log),
        )
        outage = time.monotonic() - back
        status = instance.get_run_by_id(hit).status
        assert status == DagsterRunStatus.FAILURE, f"the run under the outage ended {status}"
        assert existing_partitions(paths.table("raw"))[-1] == second.isoformat()
    print(
        f"kills (s after the landing): {kill_times}; every day current {kills:.0f} s after the "
        f"landing; after the outage, current {outage:.0f} s after the store came back"
    )
    assert date.fromisoformat(existing_partitions(paths.table("predictions"))[-1]) == second
