"""The new-data sensor on a real instance: one run per batch, nothing for re-landed content."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from driftloop.data.contract import Contract
from driftloop.data.replay import replay_days
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from sensors.new_data import build_new_data_sensor


def _evaluate(sensor, instance: DagsterInstance, root: Path, cursor: str | None = None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, resources={"lake": LakeResource(data_dir=str(root))}
    )
    return sensor(context), context


def test_a_batch_of_new_files_gives_exactly_one_run(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_daily")
    replay_days(flights_paths, date(2013, 1, 1), 3)

    result, _ = _evaluate(sensor, dagster_instance, flights_paths.root)

    assert isinstance(result, SensorResult)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.job_name == "flights_daily"
    assert request.tags[ASSET_PARTITION_RANGE_START_TAG] == "2013-01-01"
    assert request.tags[ASSET_PARTITION_RANGE_END_TAG] == "2013-01-03"
    assert request.tags["driftloop/trigger"] == "new_data"
    assert json.loads(result.cursor)["batches"] == 1
    archived = sorted(p.name.split("__")[1] for p in flights_paths.archive.iterdir())
    assert archived == [f"flights_2013-01-0{d}.csv" for d in (1, 2, 3)]


def test_relanded_file_gives_no_run_and_the_cursor_moves_on(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_daily")
    [landed] = replay_days(flights_paths, date(2013, 1, 5), 1)
    copy = flights_paths.root / "copy.csv"
    shutil.copy(landed.path, copy)
    first, _ = _evaluate(sensor, dagster_instance, flights_paths.root)
    assert len(first.run_requests) == 1

    shutil.copy(copy, flights_paths.landing / "same_content_new_name.csv")
    second, _ = _evaluate(sensor, dagster_instance, flights_paths.root, first.cursor)

    assert isinstance(second, SensorResult)
    assert second.run_requests == []
    assert "1 already ingested" in second.skip_reason.skip_message
    assert not (flights_paths.landing / "same_content_new_name.csv").exists()


def test_empty_landing_zone_skips(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_daily")
    result, _ = _evaluate(sensor, dagster_instance, flights_paths.root)
    assert isinstance(result, SkipReason)


def test_days_with_a_gap_give_one_run_per_block(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_daily")
    replay_days(flights_paths, date(2013, 2, 1), 2)
    replay_days(flights_paths, date(2013, 2, 10), 1)

    result, _ = _evaluate(sensor, dagster_instance, flights_paths.root)

    ranges = [
        (r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
        for r in result.run_requests
    ]
    assert ranges == [("2013-02-01", "2013-02-02"), ("2013-02-10", "2013-02-10")]
    assert len({r.run_key for r in result.run_requests}) == 2


def test_a_corrupt_file_is_quarantined_and_launches_nothing(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    sensor = build_new_data_sensor(flights_contract, "flights_daily")
    flights_paths.landing.mkdir(parents=True)
    (flights_paths.landing / "broken.parquet").write_bytes(b"PAR1 this is not parquet")

    result, _ = _evaluate(sensor, dagster_instance, flights_paths.root)

    assert result.run_requests == []
    assert [p.name for p in flights_paths.quarantine.glob("*.reason.txt")]
