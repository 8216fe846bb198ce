"""The demo feed, the weekly schedule, the run-request helpers and the reconciler's dead-run rule,
evaluated directly.

Sensors with `build_sensor_context(instance=...)`, schedules with `build_schedule_context`,
on a real Dagster instance and a real landing zone; asserting on what a tick returns (skip
reasons, run requests and their tags) and on the files it leaves.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from driftloop.data.contract import Contract, load_contract
from driftloop.data.replay import LAST_DAY, replay_days, replayed_days
from driftloop.names import TRIGGER_REASON_TAG, TRIGGER_TAG
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from sensors.replay_feed import build_replay_sensor
from sensors.run_requests import content_key, range_run_requests
from sensors.schedules import build_weekly_retrain_schedule
from sensors.settings import positive_int, seconds, switched_on

RANGE_START = "dagster/asset_partition_range_start"  # Dagster's range tags, as the CLI sets them
RANGE_END = "dagster/asset_partition_range_end"


def tick(sensor, instance: DagsterInstance, root: Path):
    context = build_sensor_context(
        instance=instance, resources={"lake": LakeResource(data_dir=str(root))}
    )
    return sensor(context)


def test_replay_feed_gives_a_head_start_then_one_day_a_tick(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    dagster_instance: DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_REPLAY_INITIAL_DAYS", "3")
    sensor = build_replay_sensor(flights_contract)
    assert sensor is not None
    assert sensor.default_status == DefaultSensorStatus.RUNNING

    first = tick(sensor, dagster_instance, flights_paths.root)
    second = tick(sensor, dagster_instance, flights_paths.root)

    # The feed only lands files: the new-data sensor launches the runs.
    assert isinstance(first, SkipReason) and isinstance(second, SkipReason)
    assert first.skip_message == "head start: replayed 2013-01-01..2013-01-03 (3 files)"
    assert second.skip_message == "replayed flights_2013-01-04.csv"
    landed = sorted(p.name for p in flights_paths.landing.iterdir())
    assert landed == [f"flights_2013-01-0{d}.csv" for d in (1, 2, 3, 4)]
    assert replayed_days(flights_paths)[-1] == date(2013, 1, 4)


def test_replay_feed_stops_at_the_end_of_the_data(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    replay_days(flights_paths, LAST_DAY, 1)
    sensor = build_replay_sensor(flights_contract)

    result = tick(sensor, dagster_instance, flights_paths.root)

    assert result.skip_message == "the whole year has been replayed"
    assert [p.name for p in flights_paths.landing.iterdir()] == ["flights_2013-12-31.csv"]


def test_replay_feed_is_off_on_request_and_absent_for_other_datasets(
    flights_contract: Contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_REPLAY", "off")
    sensor = build_replay_sensor(flights_contract)
    assert sensor is not None and sensor.default_status == DefaultSensorStatus.STOPPED

    other = tmp_path / "other.yaml"
    text = flights_contract.model_dump_json()
    other.write_text(text.replace('"name":"flights"', '"name":"other"', 1))
    assert build_replay_sensor(load_contract(other)) is None


def test_weekly_schedule_requests_a_tagged_retrain_in_the_contract_zone(
    flights_contract: Contract, dagster_instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRIFTLOOP_RETRAIN_CRON", raising=False)
    schedule = build_weekly_retrain_schedule(flights_contract, "flights_retrain")
    assert schedule.cron_schedule == "0 4 * * 1"
    assert schedule.execution_timezone == flights_contract.event_time.timezone
    # Off by default: the trigger decides when a retrain pays.
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    with build_schedule_context(
        instance=dagster_instance, scheduled_execution_time=datetime(2013, 3, 4, 4)
    ) as context:
        [request] = schedule.evaluate_tick(context).run_requests

    assert request.tags[TRIGGER_TAG] == "schedule"
    assert request.tags[TRIGGER_REASON_TAG] == "calendar retrain"


def test_weekly_schedule_follows_the_cron_setting(
    flights_contract: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_RETRAIN_CRON", "30 2 * * *")
    schedule = build_weekly_retrain_schedule(flights_contract, "flights_retrain")
    assert schedule.cron_schedule == "30 2 * * *"
    assert schedule.default_status == DefaultScheduleStatus.RUNNING


def test_range_run_requests_cut_days_into_consecutive_blocks() -> None:
    days = ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-05", "2013-01-07", "2013-01-08"]

    requests = range_run_requests("flights_daily", days, "new:abc", {TRIGGER_TAG: "new_data"})

    spans = [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests]
    assert spans == [
        ("2013-01-01", "2013-01-03"),
        ("2013-01-05", "2013-01-05"),
        ("2013-01-07", "2013-01-08"),
    ]
    assert [r.run_key for r in requests] == [f"new:abc:{a}..{b}" for a, b in spans]
    assert {r.job_name for r in requests} == {"flights_daily"}
    assert all(r.tags[TRIGGER_TAG] == "new_data" for r in requests)


def test_content_keys_follow_the_content() -> None:
    assert content_key("a", "b") == content_key("a", "b")
    assert content_key("a", "b") != content_key("b", "a")
    assert content_key("ab") != content_key("a", "b")  # parts are separated, not joined
    assert len(content_key("x")) == 16


@pytest.mark.parametrize(("raw", "expected"), [("", 30), ("  ", 30), ("5", 5), ("0", 1), ("-3", 1)])
def test_seconds_from_the_environment(
    raw: str, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_TEST_SECONDS", raw)
    assert seconds("DRIFTLOOP_TEST_SECONDS", 30) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("", True), ("off", False), ("OFF", False), ("0", False), ("no", False), ("on", True)],
)
def test_switches_from_the_environment(
    raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTLOOP_TEST_SWITCH", raw)
    assert switched_on("DRIFTLOOP_TEST_SWITCH", default=True) is expected


def test_a_setting_that_is_not_a_number_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DRIFTLOOP_REPLAY_INITIAL_DAYS", "five")
    with pytest.raises(ValueError, match="DRIFTLOOP_REPLAY_INITIAL_DAYS='five': expected a whole"):
        positive_int("DRIFTLOOP_REPLAY_INITIAL_DAYS", 35)


def test_the_reconciler_fails_a_started_run_whose_tagged_process_is_gone(tmp_path: Path) -> None:
    """A daily run executed inside an ingest run names that run's process in a tag: the
    reconciler finds it there when the store lost the engine event that names the pid."""
    import os
    import subprocess

    from dagster import DagsterRun, DagsterRunStatus

    from driftloop.names import PROCESS_TAG
    from sensors.reconcile import fail_dead_runs

    gone = subprocess.Popen(["true"])
    gone.wait()
    # A local instance launches with Dagster's default run launcher, whose runs run here.
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        started = DagsterRunStatus.STARTED
        dead = DagsterRun("flights_daily", status=started, tags={PROCESS_TAG: str(gone.pid)})
        alive = DagsterRun("flights_daily", status=started, tags={PROCESS_TAG: str(os.getpid())})
        untagged = DagsterRun("flights_daily", status=started)
        # Created, its process died before the run's start was recorded.
        unstarted = DagsterRun(
            "flights_daily", status=DagsterRunStatus.NOT_STARTED, tags={PROCESS_TAG: str(gone.pid)}
        )
        # Queued for the daemon's launcher: no process yet, not the reconciler's.
        queued = DagsterRun("flights_daily", status=DagsterRunStatus.NOT_STARTED)
        runs = (dead, alive, untagged, unstarted, queued)
        for run in runs:
            instance.add_run(run)
        assert set(fail_dead_runs(instance)) == {dead.run_id, unstarted.run_id}
        status = {r.run_id: instance.get_run_by_id(r.run_id).status for r in runs}
        assert status == {
            dead.run_id: DagsterRunStatus.FAILURE,
            alive.run_id: started,
            untagged.run_id: started,  # no pid known: left to Dagster's run monitoring
            unstarted.run_id: DagsterRunStatus.FAILURE,
            queued.run_id: DagsterRunStatus.NOT_STARTED,
        }
