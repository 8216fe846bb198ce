"""The new-data sensor: lists the landing zone and launches one ingest run per batch.

A tick reads names, sizes and modification times only, never a file's contents, so it
takes the same few milliseconds whatever lands. A file is taken once it has been quiet
for DRIFTLOOP_LANDING_QUIET_SECONDS; an archived file written to after archiving counts as
waiting again (driftloop/data/landing.py). The ingest run (pipelines/ingest_job.py)
does the reading; Dagster's automation (assets/automation.py) follows its days.

Why a sensor and not Dagster's automation: a landed file is not an asset partition until it
has been read (its days are in its rows), and the landing zone is outside Dagster's view;
an automation condition reacts only to what the event log records.
"""

from __future__ import annotations

import json
import time

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
from driftloop.data.landing import is_quiet, written_after_archiving
from driftloop.data.limits import IngestLimits
from driftloop.names import TRIGGER_TAG
from resources.lake import LakeResource
from sensors.run_requests import ACTIVE, content_key
from sensors.settings import seconds

# A batch whose files are still in landing after this many runs waits for a person.
MAX_ATTEMPTS = 3
NEW_DATA_SECONDS_ENV = "DRIFTLOOP_NEW_DATA_SENSOR_SECONDS"
# Short: the interval adds to the time from a landed file to its scores, and a tick lists
# the landing zone only.
NEW_DATA_SECONDS = 5


def landing_listing(
    lake: LakeResource, contract: Contract, quiet_seconds: float | None = None
) -> tuple[list[tuple[str, int, int]], list[str]]:
    """(name, size, modification time in ns) of each waiting file that has been quiet for
    `quiet_seconds` (driftloop/data/landing.py), and the names of those still changing:
    no contents read. Archived files written to after archiving count as waiting, under
    their landed names (the ingest run moves them back)."""
    paths = lake.paths(contract.name)
    if quiet_seconds is None:
        quiet_seconds = IngestLimits.from_env().quiet_seconds
    listing, changing = [], []
    now = time.time()
    for path in landing_files(paths):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if is_quiet(stat, quiet_seconds, now):
            listing.append((path.name, stat.st_size, stat.st_mtime_ns))
        else:
            changing.append(path.name)
    for path in written_after_archiving(paths):
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        if is_quiet(stat, quiet_seconds, now):
            listing.append((path.name.split("__", 1)[1], stat.st_size, stat.st_mtime_ns))
        else:
            changing.append(path.name)
    return listing, changing


def build_new_data_sensor(contract: Contract, job_name: str) -> SensorDefinition:
    @sensor(
        name=f"{contract.name}_new_data",
        job_name=job_name,
        minimum_interval_seconds=seconds(NEW_DATA_SECONDS_ENV, NEW_DATA_SECONDS),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Lists files dropped into landing/{contract.name}/ and launches one ingest run "
            "per batch; the run reads, validates and writes the raw days they fill."
        ),
    )
    def new_data(context: SensorEvaluationContext, lake: LakeResource) -> SensorResult | SkipReason:
        listing, changing = landing_listing(lake, contract)
        if not listing:
            if changing:
                return SkipReason(f"{len(changing)} file(s) still being written: {changing[:5]}")
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
