"""The new-data sensor: files in the landing zone become one run over the days they fill."""

from __future__ import annotations

import json

from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from driftloop.data.contract import Contract
from driftloop.data.ingest import file_digest, ingest_landing, landing_files
from resources.lake import LakeResource
from sensors.run_requests import content_key, range_run_requests
from sensors.settings import seconds


def build_new_data_sensor(contract: Contract, job_name: str) -> SensorDefinition:
    @sensor(
        name=f"{contract.name}_new_data",
        job_name=job_name,
        minimum_interval_seconds=seconds("DRIFTLOOP_NEW_DATA_SENSOR_SECONDS", 15),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Ingests files dropped into landing/{contract.name}/ (quarantining bad ones) and "
            "launches one run over the days they filled. Re-landed content launches nothing."
        ),
    )
    def new_data(context: SensorEvaluationContext, lake: LakeResource):
        paths = lake.paths(contract.name)
        files = landing_files(paths)
        if not files:
            return SkipReason(f"no files in {paths.landing}")
        digests = sorted(file_digest(f) for f in files)
        # Ingesting here (staging by content hash, idempotent) tells us exactly which days
        # the batch fills and quarantines bad files at once; the run then builds the days.
        report = ingest_landing(contract, paths)
        for name, reason in report.quarantined.items():
            context.log.warning(f"quarantined {name}: {reason}")
        previous = json.loads(context.cursor) if context.cursor else {}
        cursor = json.dumps(
            {
                "batches": previous.get("batches", 0) + (1 if report.days else 0),
                "last_digests": digests,
                "last_summary": report.summary(),
            }
        )
        if not report.days:
            return SensorResult(skip_reason=f"nothing new: {report.summary()}", cursor=cursor)
        batch = content_key(*digests)
        context.log.info(f"batch {batch}: {report.summary()}")
        tags = {
            "driftloop/trigger": "new_data",
            "driftloop/batch": batch,
            "driftloop/files": ",".join(report.ingested)[:1000],
        }
        requests = range_run_requests(job_name, report.days, f"new_data:{batch}", tags)
        return SensorResult(run_requests=requests, cursor=cursor)

    return new_data
