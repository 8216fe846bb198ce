"""The catch-up sensor: days that waited for a champion get scored; due labels get measured.

The daily run scores a day as soon as it lands, but a day that landed before the first
champion existed waits, and a day's labels are only due `label_delay` after it ends (on
the data's clock). This sensor finds both kinds of day in the lake and launches one run
per block of consecutive days. Run keys include the data clock, so a failed run is tried
again once new data has arrived, never in a tight loop.
"""

from __future__ import annotations

from dagster import (
    DefaultSensorStatus,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition as ExecutableDefinition,
)

from driftloop.contract import Contract
from driftloop.lake import existing_partitions
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.run_requests import ACTIVE, content_key, range_run_requests
from sensors.settings import seconds


def build_catch_up_sensor(
    contract: Contract,
    score_job: ExecutableDefinition,
    performance_job: ExecutableDefinition,
    daily_job_name: str,
) -> SensorDefinition:
    @sensor(
        name=f"{contract.name}_catch_up",
        minimum_interval_seconds=seconds("DRIFTLOOP_CATCH_UP_SENSOR_SECONDS", 30),
        default_status=DefaultSensorStatus.RUNNING,
        jobs=[score_job, performance_job],
        description=(
            f"Scores {contract.name} days that waited for a champion, and measures realised "
            "performance once a day's labels are due."
        ),
    )
    def catch_up(
        context: SensorEvaluationContext, lake: LakeResource, mlflow: MlflowResource
    ) -> SensorResult | SkipReason:
        from driftloop.monitoring import data_clock, labels_due

        paths = lake.paths(contract.name)
        jobs = {score_job.name, performance_job.name, daily_job_name}
        active = context.instance.get_runs(RunsFilter(statuses=ACTIVE), limit=100)
        in_flight = [run for run in active if run.job_name in jobs]
        if in_flight:
            return SkipReason(f"{len(in_flight)} scoring run(s) of {contract.name} in flight")
        champion = mlflow.version_for_alias(contract.name, "champion")
        if champion is None:
            return SkipReason("no champion yet: days wait")
        featured = existing_partitions(paths.table("features"))
        scored = set(existing_partitions(paths.table("predictions")))
        measured = set(existing_partitions(paths.table("performance")))
        clock = data_clock(contract, paths)
        unscored = [d for d in featured if d not in scored]
        unmeasured = [
            d for d in sorted(scored) if d not in measured and labels_due(contract, d, clock)
        ]
        if not unscored and not unmeasured:
            return SkipReason("every day is scored and every due day measured")
        key = content_key(str(champion.version), str(clock))
        tags = {"driftloop/trigger": "catch_up", "driftloop/champion": str(champion.version)}
        requests = [
            *range_run_requests(score_job.name, unscored, f"score:{key}", tags),
            *range_run_requests(performance_job.name, unmeasured, f"performance:{key}", tags),
        ]
        context.log.info(f"{len(unscored)} day(s) to score, {len(unmeasured)} to measure")
        return SensorResult(run_requests=requests)

    return catch_up
