"""Which daily partitions the daemon rebuilds: Dagster's declarative automation.

Every daily asset downstream of `raw_data` (features, predictions, drift_report,
performance) carries `keep_current()`, and one `AutomationConditionSensorDefinition` per
dataset evaluates it (sensors/automation.py). A partition is requested when, since it was
last requested or materialized, one of its upstream partitions was updated (a new day, a
correction, a rebuilt features or predictions day: every asset downstream of a rebuilt
partition goes stale, not only the next one), it went missing, or its last run failed (a
failed or killed run is tried again at the next evaluation, without new data; performance,
which skips days whose labels are not due, leaves that to the catch-up sensor: see
`keep_current`). It waits while an upstream partition is missing or in progress, and while
it is in progress itself. Partitions an upstream of the same tick will build are requested
with it, so one run carries a day from features to monitoring.

A raw day blocked by its checks is requested like any other and stops at `features`, which
reads the day's `BLOCKED.json` and materializes nothing for it, so its downstream steps are
skipped. Dagster's own gate (`all_deps_blocking_checks_passed`) cannot serve: it counts a
partitioned check only when its evaluation is linked to the partition's materialization,
which a run that records many days (the ingest job, a range run) cannot do through
Dagster's public API.

A landed day's downstream is normally built by the ingest run that wrote its raw data, in
a daily run of its own (pipelines/ingest_daily.py). Both runs carry the tag
`driftloop/ingest_daily=in_run`, and a partition counts as handled once an upstream
partition was updated by such a run: the automation leaves the days to the ingest run,
whatever it builds or skips (a blocked day, performance on a day whose labels are not due).
What the daily run fails to build is failed in the instance and requested again; an ingest
run that died before its daily run started is relaunched by the instance's run retries from
that step.

What the automation cannot see stays in sensors: files in the landing zone
(sensors/new_data.py), the champion alias in MLflow and the lake's data clock that makes
labels due (sensors/catch_up.py).
"""

from __future__ import annotations

from dagster import AutomationCondition, Backoff, RetryPolicy

AUTOMATED_ASSETS = ("features", "predictions", "drift_report", "performance")
# On the ingest runs that build their days' daily assets and on those daily runs
# (pipelines/ingest_daily.py sets it; spelled here, below the pipelines that use it).
INGEST_DAILY_TAG = "driftloop/ingest_daily"
# The ingest run whose step executed a daily run (its first attempt's run id).
INGEST_RUN_TAG = "driftloop/ingest_run"


def keep_current(retry_failed: bool = True) -> AutomationCondition:
    """Rebuild a partition whose inputs changed or, with `retry_failed`, whose last run failed
    (module docstring).

    `retry_failed=False` is for an asset that skips partitions in successful runs (performance
    skips a day whose labels are not due yet): Dagster counts a partition as failed from a
    failed run until it is materialized, and a successful run that skips it does not clear
    that, so a retry trigger would request the day again after every run until its labels
    arrive. Such an asset's failed days are retried by its own sensor (the catch-up sensor for
    performance) and by the instance's run retries."""
    condition = AutomationCondition
    trigger = (
        condition.missing().newly_true().with_label("newly missing")
        | condition.any_deps_updated()
        | condition.any_deps_match(condition.will_be_requested()).with_label(
            "an upstream partition will be requested"
        )
    )
    if retry_failed:
        trigger = trigger | condition.execution_failed()
    handled = (
        condition.newly_requested()
        | condition.newly_updated()
        | condition.any_deps_match(
            condition.any_new_update_has_run_tags(tag_keys={INGEST_DAILY_TAG})
        ).with_label("left to the ingest run, which builds or skips it")
    )
    return (
        trigger.since(handled).with_label("inputs changed or last run failed, since handled")
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
    ).with_label("keep_current")


def store_retry_policy() -> RetryPolicy:
    """Steps that talk to a store (MLflow's tracking store, the registry) try again after 5,
    10 and 20 s: a store that restarts or drops connections for a moment heals inside the
    run. A longer outage fails the run, and the automation requests it again."""
    return RetryPolicy(max_retries=3, delay=5, backoff=Backoff.EXPONENTIAL)
