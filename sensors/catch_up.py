"""Catching up: days that waited for a champion get scored; due labels get measured.

A sensor does it within a minute, and a daily schedule is the calendar's backstop.

The daily run scores a day as soon as it lands, but a day that landed before the first
champion existed waits, and a day's labels are only due `label_delay` after it ends (on
the data's clock). This sensor finds both kinds of day in the lake and launches one run
per block of consecutive days. Run keys include the data clock, so a failed run is tried
again once new data has arrived, never in a tight loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from dagster import (
    DagsterInstance,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.job_names import AssetJob
from driftloop.data.contract import Contract
from driftloop.data.lake import existing_partitions
from driftloop.names import CHAMPION_TAG, TRIGGER_TAG
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.run_requests import ACTIVE, content_key, range_run_requests
from sensors.settings import seconds


@dataclass(frozen=True)
class CatchUpJobs:
    score: AssetJob
    performance: AssetJob
    daily_name: str

    @property
    def names(self) -> set[str]:
        return {self.score.name, self.performance.name, self.daily_name}


@dataclass(frozen=True)
class Behind:
    """Days with features but no predictions, and scored days whose labels are now due."""

    unscored: list[str]
    unmeasured: list[str]
    key: str
    tags: dict[str, str]


def behind(
    contract: Contract,
    lake: LakeResource,
    mlflow: MlflowResource,
    instance: DagsterInstance,
    jobs: CatchUpJobs,
    trigger: str,
) -> Behind | str:
    """The days that are behind, or the reason to do nothing now (a skip message)."""
    from driftloop.monitoring.signals import data_clock, labels_due

    paths = lake.paths(contract.name)
    active = instance.get_runs(RunsFilter(statuses=ACTIVE), limit=100)
    in_flight = [run for run in active if run.job_name in jobs.names]
    if in_flight:
        return f"{len(in_flight)} scoring run(s) of {contract.name} in flight"
    champion = mlflow.version_for_alias(contract.name, "champion")
    if champion is None:
        return "no champion yet: days wait"
    featured = existing_partitions(paths.table("features"))
    scored = set(existing_partitions(paths.table("predictions")))
    measured = set(existing_partitions(paths.table("performance")))
    clock = data_clock(contract, paths)
    unscored = [d for d in featured if d not in scored]
    unmeasured = [d for d in sorted(scored) if d not in measured and labels_due(contract, d, clock)]
    if not unscored and not unmeasured:
        return "every day is scored and every due day measured"
    return Behind(
        unscored,
        unmeasured,
        key=content_key(trigger, str(champion.version), str(clock)),
        tags={TRIGGER_TAG: trigger, CHAMPION_TAG: str(champion.version)},
    )


def build_catch_up_sensor(contract: Contract, jobs: CatchUpJobs) -> SensorDefinition:
    @sensor(
        name=f"{contract.name}_catch_up",
        minimum_interval_seconds=seconds("DRIFTLOOP_CATCH_UP_SENSOR_SECONDS", 30),
        default_status=DefaultSensorStatus.RUNNING,
        jobs=[jobs.score, jobs.performance],
        description=(
            f"Scores {contract.name} days that waited for a champion, and measures realised "
            "performance once a day's labels are due."
        ),
    )
    def catch_up(
        context: SensorEvaluationContext, lake: LakeResource, mlflow: MlflowResource
    ) -> SensorResult | SkipReason:
        days = behind(contract, lake, mlflow, context.instance, jobs, "catch_up")
        if isinstance(days, str):
            return SkipReason(days)
        context.log.info(f"{len(days.unscored)} day(s) to score, {len(days.unmeasured)} to measure")
        requests = [
            *range_run_requests(jobs.score.name, days.unscored, f"score:{days.key}", days.tags),
            *range_run_requests(
                jobs.performance.name, days.unmeasured, f"performance:{days.key}", days.tags
            ),
        ]
        return SensorResult(run_requests=requests)

    return catch_up


def build_daily_scoring_schedule(contract: Contract, jobs: CatchUpJobs) -> ScheduleDefinition:
    """The daily scoring path on the calendar: whatever is behind at 06:00 is scored."""

    @schedule(
        name=f"{contract.name}_daily_scoring",
        cron_schedule=os.environ.get("DRIFTLOOP_SCORING_CRON", "0 6 * * *"),
        execution_timezone=contract.event_time.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        job=jobs.score,
        description=(
            f"Every morning: scores {contract.name} days not yet scored by the champion and "
            "measures days whose labels are due (the sensor does the same within minutes)."
        ),
    )
    def daily_scoring(
        context: ScheduleEvaluationContext, lake: LakeResource, mlflow: MlflowResource
    ) -> list[RunRequest] | SkipReason:
        days = behind(contract, lake, mlflow, context.instance, jobs, "schedule")
        if isinstance(days, str):
            return SkipReason(days)
        # One job on the calendar: the scoring job also measures the days it covers.
        todo = sorted({*days.unscored, *days.unmeasured})
        return range_run_requests(jobs.score.name, todo, f"schedule:{days.key}", days.tags)

    return daily_scoring
