"""The downstream sensor: days whose raw inputs changed get features, scores and monitoring.

Staleness comes from Dagster's event log, not from a schedule of our own: a day's
features are stale when no features materialization exists for it (a new day) or when
the newest `raw_data` materialization among the days its rolling windows read (the day
and `lookback_days` before it) is more recent than that day's features materialization
(a correction, or a late day). Stale days are rebuilt by the daily job (features,
predictions, drift report, performance), one run per block of consecutive days. Blocked
raw days are left out (their checks failed).

Recomputed history is not news: runs over days that had features already carry the tag
`driftloop/recompute=true`, and the retraining trigger does not decide on their drift and
performance (sensors/recompute.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DefaultSensorStatus,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from assets.job_names import ingest_job_name
from driftloop.data.contract import Contract
from driftloop.data.lake import is_blocked
from driftloop.features.definition import lookback_days
from driftloop.names import RAW_TABLE, TRIGGER_TAG
from resources.lake import LakeResource
from sensors.recompute import RECOMPUTE_TAG
from sensors.run_requests import ACTIVE, content_key, range_run_requests
from sensors.settings import seconds


@dataclass(frozen=True)
class StaleDays:
    new: list[str]  # raw days without features yet
    recompute: list[str]  # days with features built from raw inputs that changed since
    blocked: list[str]  # stale days whose raw checks failed: left alone
    key: str  # the newest raw materialization considered: run keys never repeat by accident


def _latest_ids(instance: DagsterInstance, key: AssetKey) -> dict[str, int]:
    return dict(
        instance.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION)
    )


def stale_days(contract: Contract, instance: DagsterInstance, lake: LakeResource) -> StaleDays:
    """Compare the latest raw and features materializations per day (module docstring)."""
    raw = _latest_ids(instance, AssetKey([contract.name, "raw_data"]))
    features = _latest_ids(instance, AssetKey([contract.name, "features"]))
    reach = lookback_days(contract)
    raw_table = lake.paths(contract.name).table(RAW_TABLE)
    new, recompute, blocked = [], [], []
    for day in sorted(raw):
        first = date.fromisoformat(day) - timedelta(days=reach)
        window = [(first + timedelta(days=i)).isoformat() for i in range(reach + 1)]
        newest_input = max(raw.get(d, 0) for d in window)
        built = features.get(day)
        if built is not None and newest_input < built:
            continue
        if is_blocked(raw_table, day):
            blocked.append(day)
        else:
            (new if built is None else recompute).append(day)
    return StaleDays(new, recompute, blocked, key=str(max(raw.values(), default=0)))


def build_stale_days_sensor(contract: Contract, job_name: str) -> SensorDefinition:
    @sensor(
        name=f"{contract.name}_stale_days",
        job_name=job_name,
        # Cheap (two event-log queries): ticking often keeps landing-to-scores latency low.
        minimum_interval_seconds=seconds("DRIFTLOOP_STALE_DAYS_SENSOR_SECONDS", 5),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Rebuilds {contract.name} features, predictions and monitoring for the days whose "
            "raw inputs changed (new days, corrections, late days within the rolling windows)."
        ),
    )
    def stale(context: SensorEvaluationContext, lake: LakeResource) -> SensorResult | SkipReason:
        for running in (job_name, ingest_job_name(contract)):
            # An ingest run writes its days one by one: wait for all of them.
            if context.instance.get_runs(RunsFilter(job_name=running, statuses=ACTIVE), limit=1):
                return SkipReason(f"a {running} run is in flight: what is stale may change")
        days = stale_days(contract, context.instance, lake)
        if days.blocked:
            context.log.warning(f"raw days blocked by failed checks, not rebuilt: {days.blocked}")
        if not days.new and not days.recompute:
            return SkipReason("every raw day's features are up to date")
        context.log.info(f"new days {days.new}; days to recompute {days.recompute}")
        key = content_key(days.key, *days.new, "|", *days.recompute)
        requests = [
            *range_run_requests(job_name, days.new, f"new:{key}", {TRIGGER_TAG: "new_data"}),
            *range_run_requests(
                job_name,
                days.recompute,
                f"recompute:{key}",
                {TRIGGER_TAG: "recompute", RECOMPUTE_TAG: "true"},
            ),
        ]
        return SensorResult(run_requests=requests)

    return stale
