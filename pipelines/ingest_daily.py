"""The landed days' daily assets, built inside the ingest run that wrote their raw data.

After the ingest step has recorded the raw days of a batch, the run's second step executes
the dataset's daily job (features, predictions, drift report, performance) in its own
process for those days, one Dagster run per block of consecutive days: no automation tick,
no run queue, no new process loading the code location between a landed file and its
scores. Each of those runs is an ordinary run of the daily job in the instance. The ingest
run and its daily runs carry `driftloop/ingest_daily=in_run` (`ingest_daily_tags`), which
tells Dagster's automation to leave those days to them (assets/automation.py); what a daily
run fails to build, the automation requests again. An ingest run that died before its
daily run is relaunched by the instance's run retries from this step; a relaunch whose first
attempt had started a daily run builds nothing (the automation has those days).

Which days: the written days and the later days whose rolling windows read them (a
correction rebuilds those too), each only once every raw day its windows read is there,
and not a day blocked by its checks (it stays without features, as it would in any run).
`DRIFTLOOP_INGEST_DAILY=off` leaves every day to the automation. An ingest job executed in
process without its code location (`execute_in_process`) cannot find the daily job and
builds nothing.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

from dagster import RunsFilter
from dagster_shared.check import CheckError

from assets.automation import INGEST_DAILY_TAG, INGEST_RUN_TAG
from driftloop.data.contract import Contract
from driftloop.data.lake import contiguous_ranges, existing_partitions, is_blocked
from driftloop.features.definition import lookback_days
from driftloop.names import PROCESS_TAG, RAW_TABLE, TRIGGER_TAG
from driftloop.paths import DatasetPaths
from pipelines.jobs import daily_job_name
from sensors.run_requests import PARTITION_RANGE_END_TAG, PARTITION_RANGE_START_TAG
from sensors.settings import switched_on

INGEST_DAILY_ENV = "DRIFTLOOP_INGEST_DAILY"
INGEST_TRIGGER = "ingest"  # the daily runs' TRIGGER_TAG
ROOT_RUN_TAG = "dagster/root_run_id"  # Dagster's, on a relaunch: the first attempt's run id


def ingest_daily_tags() -> dict[str, str]:
    """The ingest job's tags when its runs build their days (read when the job is built)."""
    return {INGEST_DAILY_TAG: "in_run"} if switched_on(INGEST_DAILY_ENV, default=True) else {}


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def days_to_build(contract: Contract, paths: DatasetPaths, written: list[str]) -> list[str]:
    """The written days and the later days whose windows read them: those with a raw
    partition, not blocked, and whose windows find every raw day since the partitions'
    start (a day with a hole in its windows waits, as the automation makes it wait)."""
    raw_table = paths.table(RAW_TABLE)
    present = set(existing_partitions(raw_table))
    reach = lookback_days(contract)
    start = contract.partitions.start.isoformat()
    candidates = {_shift(day, k) for day in written for k in range(reach + 1)} & present
    build = []
    for day in sorted(candidates):
        window = [_shift(day, -k) for k in range(1, reach + 1)]
        if is_blocked(raw_table, day) or any(d not in present for d in window if d >= start):
            continue
        build.append(day)
    return build


def build_landed_days(
    context: Any, contract: Contract, paths: DatasetPaths, written: list[str]
) -> list[str]:
    """Execute the daily job in this process for the days the ingest step wrote (module
    docstring); returns the run ids. A failed daily run is logged, not raised: its
    partitions are failed in the instance and the automation requests them again."""
    if not switched_on(INGEST_DAILY_ENV, default=True):
        context.log.info(f"{INGEST_DAILY_ENV}=off: the automation builds the days")
        return []
    name = daily_job_name(contract)
    try:
        repository = context.repository_def
    except CheckError:  # executed in process (`execute_in_process`), without a code location
        repository = None
    if repository is None or not repository.has_job(name):
        context.log.info(f"no job {name} beside this one: the automation builds the days")
        return []
    job = repository.get_job(name)
    root = context.run.tags.get(ROOT_RUN_TAG, context.run_id)
    if context.instance.get_runs(RunsFilter(tags={INGEST_RUN_TAG: root}), limit=1):
        context.log.info(f"run {root} started this batch's daily runs: the automation has them")
        return []
    days = days_to_build(contract, paths, written)
    tags = {
        TRIGGER_TAG: INGEST_TRIGGER,
        INGEST_RUN_TAG: root,
        **ingest_daily_tags(),
        "dagster/max_retries": "0",  # the automation requests what it failed to build
        # The reconciler fails the run once this process is gone, even when the store lost
        # the engine event that names it (a store outage just after the run started).
        PROCESS_TAG: str(os.getpid()),
    }
    run_ids = []
    for first, last in contiguous_ranges(days):
        span = {PARTITION_RANGE_START_TAG: first, PARTITION_RANGE_END_TAG: last}
        result = job.execute_in_process(
            instance=context.instance,
            partition_key=first if first == last else None,
            tags=tags if first == last else {**tags, **span},
            raise_on_error=False,
        )
        run_ids.append(result.run_id)
        outcome = "built" if result.success else "FAILED (the automation requests it again)"
        context.log.info(f"{contract.name} {first}..{last}: daily run {result.run_id} {outcome}")
    if not days:
        context.log.info(f"{contract.name}: no day to build (blocked or waiting for raw days)")
    return run_ids
