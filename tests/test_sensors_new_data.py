"""The new-data sensor on a real instance: it lists files, launches one ingest run per batch,
and the ingest run (a real job run in process) writes the days the files fill."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from driftloop.data.contract import Contract
from driftloop.data.replay import replay_days
from driftloop.paths import DatasetPaths, dataset_paths
from pipelines.ingest_job import build_ingest_job
from resources.lake import LakeResource
from sensors.new_data import build_new_data_sensor

RAW = AssetKey(["flights", "raw_data"])


@pytest.fixture(autouse=True)
def _files_taken_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests land whole files: no quiet period, except where a test sets one."""
    monkeypatch.setenv("DRIFTLOOP_LANDING_QUIET_SECONDS", "0")


def _evaluate(sensor, instance: DagsterInstance, root: Path, cursor: str | None = None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(data_dir=str(root))}
    )
    return sensor(context)


def _execute(contract: Contract, request: RunRequest, instance: DagsterInstance, root: Path):
    job = build_ingest_job(contract)
    return job.execute_in_process(
        run_config=request.run_config,
        instance=instance,
        resources={"lake": LakeResource(data_dir=str(root))},
        tags=request.tags,
        raise_on_error=False,
    )


def test_a_batch_gives_one_ingest_run_and_the_run_writes_its_days(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_ingest")
    replay_days(flights_paths, date(2013, 1, 1), 3)

    result = _evaluate(sensor, dagster_instance, flights_paths.root)

    assert isinstance(result, SensorResult)
    [request] = result.run_requests
    assert request.job_name == "flights_ingest"
    assert request.tags["driftloop/trigger"] == "new_data"
    files = request.run_config["ops"]["flights_ingest_files"]["config"]["files"]
    assert files == [f"flights_2013-01-0{d}.csv" for d in (1, 2, 3)]
    assert json.loads(result.cursor)["batches"] == 1
    # The tick read nothing: the files wait in landing for the run.
    assert sorted(p.name for p in flights_paths.landing.iterdir()) == files

    run = _execute(flights_contract, request, dagster_instance, flights_paths.root)

    assert run.success
    days = ["2013-01-01", "2013-01-02", "2013-01-03"]
    assert sorted(m.partition for m in run.get_asset_materialization_events()) == days
    for day in days:
        assert pq.ParquetFile(flights_paths.partition_file("raw", day)).metadata.num_rows > 500
    evaluations = run.get_asset_check_evaluations()
    assert {(e.check_name, e.partition) for e in evaluations} == {("contract", d) for d in days}
    meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert meta["rows_landed"].value == meta["rows_stored"].value > 500
    assert list(flights_paths.landing.iterdir()) == []


def test_relanded_content_launches_a_run_that_changes_nothing(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_ingest")
    [landed] = replay_days(flights_paths, date(2013, 1, 5), 1)
    content = landed.path.read_bytes()
    first = _evaluate(sensor, dagster_instance, flights_paths.root)
    assert _execute(flights_contract, first.run_requests[0], dagster_instance, flights_paths.root)
    written = flights_paths.partition_file("raw", "2013-01-05").stat().st_mtime_ns

    (flights_paths.landing / "same_content_new_name.csv").write_bytes(content)
    second = _evaluate(sensor, dagster_instance, flights_paths.root, first.cursor)
    run = _execute(flights_contract, second.run_requests[0], dagster_instance, flights_paths.root)

    assert run.success and run.get_asset_materialization_events() == []
    assert not (flights_paths.landing / "same_content_new_name.csv").exists()
    assert flights_paths.partition_file("raw", "2013-01-05").stat().st_mtime_ns == written


def test_empty_landing_zone_skips_and_an_active_ingest_run_waits(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_ingest")
    assert isinstance(_evaluate(sensor, dagster_instance, flights_paths.root), SkipReason)

    replay_days(flights_paths, date(2013, 2, 1), 1)
    job = build_ingest_job(flights_contract)
    dagster_instance.create_run_for_job(job, status=DagsterRunStatus.STARTED)
    waiting = _evaluate(sensor, dagster_instance, flights_paths.root)
    assert isinstance(waiting, SkipReason) and "in flight" in waiting.skip_message


def test_a_huge_one_line_csv_beside_a_good_file(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    """16 MB on one line (1.6M columns): the tick takes milliseconds, the run quarantines the
    file after reading its first bytes, and the good day is written."""
    sensor = build_new_data_sensor(flights_contract, "flights_ingest")
    replay_days(flights_paths, date(2013, 3, 1), 1)
    huge = flights_paths.landing / "huge.csv"
    huge.write_bytes(b"c," * (8 * 1024 * 1024))

    started = time.perf_counter()
    result = _evaluate(sensor, dagster_instance, flights_paths.root)
    tick_seconds = time.perf_counter() - started
    assert tick_seconds < 2.0, tick_seconds
    [request] = result.run_requests

    started = time.perf_counter()
    run = _execute(flights_contract, request, dagster_instance, flights_paths.root)
    run_seconds = time.perf_counter() - started

    assert run.success
    assert run_seconds < 30, run_seconds
    assert [m.partition for m in run.get_asset_materialization_events()] == ["2013-03-01"]
    assert flights_paths.partition_file("raw", "2013-03-01").exists()
    [reason_file] = flights_paths.quarantine.glob("huge.*.reason.txt")
    reason = reason_file.read_text()
    assert reason_file.stat().st_size < 1024, reason
    assert "landed file: huge.csv" in reason
    assert "header line longer than" in reason and "not read" in reason
    assert len(list(flights_paths.quarantine.glob("huge.*.csv"))) == 1


def test_a_file_written_in_two_halves_ends_whole_in_the_lake(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    dagster_instance: DagsterInstance,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A writer flushes half a day, pauses past the quiet period and a tick, and writes the
    rest into the handle it kept (the file was archived meanwhile): the rest is reclaimed
    and ingested as a correction; every row ends in the lake, counted exactly."""
    monkeypatch.setenv("DRIFTLOOP_LANDING_QUIET_SECONDS", "1")
    sensor = build_new_data_sensor(flights_contract, "flights_ingest")
    [whole] = replay_days(dataset_paths("flights", tmp_path / "source"), date(2013, 1, 7), 1)
    lines = whole.path.read_bytes().splitlines(keepends=True)
    half = len(lines) // 2
    flights_paths.landing.mkdir(parents=True, exist_ok=True)
    landed = flights_paths.landing / whole.path.name
    with landed.open("wb") as writer:
        writer.write(b"".join(lines[:half]))
        writer.flush()
        waiting = _evaluate(sensor, dagster_instance, flights_paths.root)
        assert isinstance(waiting, SkipReason) and "still being written" in waiting.skip_message
        time.sleep(1.2)
        first = _evaluate(sensor, dagster_instance, flights_paths.root)
        assert _execute(
            flights_contract, first.run_requests[0], dagster_instance, flights_paths.root
        )
        assert not landed.exists()  # taken: archived, while the writer still holds it
        assert len(pq.read_table(flights_paths.partition_file("raw", "2013-01-07"))) == half - 1
        writer.write(b"".join(lines[half:]))
    time.sleep(1.2)
    second = _evaluate(sensor, dagster_instance, flights_paths.root, first.cursor)
    [request] = second.run_requests
    assert request.run_config["ops"]["flights_ingest_files"]["config"]["files"] == [landed.name]
    run = _execute(flights_contract, request, dagster_instance, flights_paths.root)
    assert run.success

    rows = len(lines) - 1  # the header
    [event] = run.get_asset_materialization_events()
    meta = event.materialization.metadata
    assert meta["rows_landed"].value == rows
    stored, quarantined = meta["rows_stored"].value, meta["rows_quarantined"].value
    assert stored + quarantined + meta["exact_duplicates_dropped"].value == rows
    assert len(pq.read_table(flights_paths.partition_file("raw", "2013-01-07"))) == stored
    assert [p.name.split("__", 1)[1] for p in flights_paths.archive.iterdir()] == [landed.name]
    assert list(flights_paths.landing.iterdir()) == []
    after = _evaluate(sensor, dagster_instance, flights_paths.root, second.cursor)
    assert isinstance(after, SkipReason)
