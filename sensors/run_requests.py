"""Run requests over a range of daily partitions, with run keys that never repeat by accident."""

from __future__ import annotations

import hashlib

from dagster import DagsterRunStatus, RunRequest

from driftloop.data.lake import contiguous_ranges

# Dagster's run tags for one run over a range of partitions (the tags a single-run backfill
# carries); `RunRequest.partition_key_range` reads them back.
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"

# Runs that are waiting or working: a sensor does not pile new runs on top of these.
ACTIVE = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def content_key(*parts: str) -> str:
    """A short hash of the parts: run keys built from content, not from counters or days."""
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def range_run_requests(
    job_name: str, days: list[str], key_prefix: str, tags: dict[str, str]
) -> list[RunRequest]:
    """One run per block of consecutive days; each run processes its block in one step."""
    requests = []
    for first, last in contiguous_ranges(days):
        range_tags = {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
        requests.append(
            RunRequest(
                run_key=f"{key_prefix}:{first}..{last}",
                job_name=job_name,
                tags={**tags, **range_tags},
            )
        )
    return requests
