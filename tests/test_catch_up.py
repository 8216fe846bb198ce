"""Catching up on a real instance and MLflow store: the sensor and the daily schedule."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    SensorResult,
    SkipReason,
    build_schedule_context,
    build_sensor_context,
)

from driftloop.data.lake import write_parquet_atomic
from pipelines import jobs
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.catch_up import CatchUpJobs, build_catch_up_sensor, build_daily_scoring_schedule

DAYS = ["2013-03-01", "2013-03-02", "2013-03-03", "2013-03-05"]


def _catch_up_jobs(contract) -> CatchUpJobs:
    return CatchUpJobs(
        score=jobs.build_catch_up_job(contract),
        performance=jobs.build_performance_job(contract),
        daily_name=jobs.daily_job_name(contract),
    )


def _resources(root: Path) -> dict:
    return {"lake": LakeResource(data_dir=str(root)), "mlflow": MlflowResource(data_dir=str(root))}


def _lake(paths) -> None:
    """Features for four days; predictions for the first; raw data up to 2013-03-05."""
    for day in DAYS:
        write_parquet_atomic(pd.DataFrame({"x": [1.0]}), paths.partition_file("features", day))
    write_parquet_atomic(pd.DataFrame({"x": [1.0]}), paths.partition_file("predictions", DAYS[0]))
    clock = pd.DataFrame({"scheduled_departure": [pd.Timestamp("2013-03-05 23:00")]})
    write_parquet_atomic(clock, paths.partition_file("raw", "2013-03-05"))


def _champion(root: Path) -> None:
    mlflow = MlflowResource(data_dir=str(root))
    client = mlflow.client()
    client.create_registered_model("flights")
    version = client.create_model_version(
        "flights", source=str(mlflow.artifact_root() / "placeholder"), run_id=None
    )
    client.set_registered_model_alias("flights", "champion", version.version)


def test_sensor_waits_for_a_champion_then_scores_and_measures_what_is_behind(
    flights_contract, flights_paths, dagster_instance
) -> None:
    sensor = build_catch_up_sensor(flights_contract, _catch_up_jobs(flights_contract))
    _lake(flights_paths)
    context = build_sensor_context(
        instance=dagster_instance, resources=_resources(flights_paths.root)
    )
    waiting = sensor(context)
    assert isinstance(waiting, SkipReason) and "no champion" in waiting.skip_message

    _champion(flights_paths.root)
    result = sensor(context)

    assert isinstance(result, SensorResult)
    runs = [
        (r.job_name, r.partition_key_range.start, r.partition_key_range.end)
        for r in result.run_requests
    ]
    # Unscored days in two blocks; day 1's labels are due (clock 03-05 23:00 >= 03-03 00:00).
    assert runs == [
        ("flights_score", "2013-03-02", "2013-03-03"),
        ("flights_score", "2013-03-05", "2013-03-05"),
        ("flights_performance", "2013-03-01", "2013-03-01"),
    ]


@pytest.mark.slow
def test_daily_schedule_scores_the_same_days_with_one_job(
    flights_contract, flights_paths, dagster_instance
) -> None:
    schedule = build_daily_scoring_schedule(flights_contract, _catch_up_jobs(flights_contract))
    _lake(flights_paths)
    _champion(flights_paths.root)
    # Closed on exit: `context.instance` opens an instance from the ref, which publishes
    # its defs-state storage in a context variable until it is closed.
    with build_schedule_context(
        instance=dagster_instance,
        scheduled_execution_time=datetime(2013, 3, 6, 6, 0),
        resources=_resources(flights_paths.root),
    ) as context:
        requests = schedule.evaluate_tick(context).run_requests

    assert [r.partition_key_range.start for r in requests] == [
        "2013-03-01",
        "2013-03-05",
    ]
    assert {r.tags["driftloop/trigger"] for r in requests} == {"schedule"}
    assert schedule.job_name == "flights_score"
