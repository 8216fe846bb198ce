"""The new-data sensor: lists the landing zone and launches one ingest run per batch.

A tick reads names, sizes and modification times only, never a file's contents, so it
takes the same few milliseconds whatever lands. The ingest run (pipelines/ingest_job.py)
does the reading; the downstream sensor (sensors/stale_days.py) follows its days.
"""

from __future__ import annotations

import json

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.job_names import ingest_op_name
from driftloop.data.contract import Contract
from driftloop.data.ingest import landing_files
from driftloop.names import TRIGGER_TAG
from resources.lake import LakeResource
from sensors.run_requests import ACTIVE, content_key
from sensors.settings import seconds

# A batch whose files are still in landing after this many runs waits for a person.
MAX_ATTEMPTS = 3


def landing_listing(lake: LakeResource, contract: Contract) -> list[tuple[str, int, int]]:
    """(name, size, modification time in ns) of each waiting file: no contents read."""
    listing = []
    for path in landing_files(lake.paths(contract.name)):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        listing.append((path.name, stat.st_size, stat.st_mtime_ns))
    return listing


def build_new_data_sensor(contract: Contract, job_name: str) -> SensorDefinition:
    @sensor(
        name=f"{contract.name}_new_data",
        job_name=job_name,
        minimum_interval_seconds=seconds("DRIFTLOOP_NEW_DATA_SENSOR_SECONDS", 15),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Lists files dropped into landing/{contract.name}/ and launches one ingest run "
            "per batch; the run reads, validates and writes the raw days they fill."
        ),
    )
    def new_data(context: SensorEvaluationContext, lake: LakeResource) -> SensorResult | SkipReason:
        listing = landing_listing(lake, contract)
        if not listing:
            return SkipReason(f"no files in {lake.paths(contract.name).landing}")
        active = RunsFilter(job_name=job_name, statuses=ACTIVE)
        if context.instance.get_runs(active, limit=1):
            return SkipReason(f"{len(listing)} file(s) wait for the ingest run in flight")
        batch = content_key(*(f"{name}:{size}:{mtime}" for name, size, mtime in listing))
        state = json.loads(context.cursor) if context.cursor else {}
        attempts = state.get("attempts", 0) if state.get("batch") == batch else 0
        if attempts >= MAX_ATTEMPTS:
            return SkipReason(
                f"batch {batch} is still in landing after {attempts} ingest runs: see the "
                f"runs tagged driftloop/batch={batch}"
            )
        names = [name for name, _, _ in listing]
        context.log.info(f"batch {batch}: {len(names)} file(s), {sum(s for _, s, _ in listing)} B")
        request = RunRequest(
            run_key=f"ingest:{batch}:{attempts}",
            job_name=job_name,
            run_config={"ops": {ingest_op_name(contract): {"config": {"files": names}}}},
            tags={
                TRIGGER_TAG: "new_data",
                "driftloop/batch": batch,
                "driftloop/files": ",".join(names)[:1000],
            },
        )
        cursor = {"batch": batch, "attempts": attempts + 1, "batches": state.get("batches", 0) + 1}
        return SensorResult(run_requests=[request], cursor=json.dumps(cursor))

    return new_data
