"""Which daily partitions the daemon rebuilds: Dagster's declarative automation.

Every daily asset downstream of `raw_data` (features, predictions, drift_report,
performance) carries `keep_current()`, and one `AutomationConditionSensorDefinition` per
dataset evaluates it (sensors/automation.py). A partition is requested when, since it was
last requested or materialized, one of its upstream partitions was updated (a new day, a
correction, a rebuilt features or predictions day: every asset downstream of a rebuilt
partition goes stale, not only the next one), it went missing, or its last run failed (a
failed or killed run is tried again at the next evaluation, without new data). It waits
while an upstream partition is missing or in progress, and while it is in progress itself.
Partitions an upstream of the same tick will build are requested with it, so one run
carries a day from features to monitoring.

A raw day blocked by its checks is requested like any other and stops at `features`, which
reads the day's `BLOCKED.json` and materializes nothing for it, so its downstream steps are
skipped. Dagster's own gate (`all_deps_blocking_checks_passed`) cannot serve: it counts a
partitioned check only when its evaluation is linked to the partition's materialization,
which a run that records many days (the ingest job, a range run) cannot do through
Dagster's public API.

What the automation cannot see stays in sensors: files in the landing zone
(sensors/new_data.py), the champion alias in MLflow and the lake's data clock that makes
labels due (sensors/catch_up.py).
"""

from __future__ import annotations

from dagster import AutomationCondition, Backoff, RetryPolicy

AUTOMATED_ASSETS = ("features", "predictions", "drift_report", "performance")


def keep_current() -> AutomationCondition:
    """Rebuild a partition whose inputs changed or whose last run failed (module docstring)."""
    condition = AutomationCondition
    trigger = (
        condition.missing().newly_true().with_label("newly missing")
        | condition.any_deps_updated()
        | condition.any_deps_match(condition.will_be_requested()).with_label(
            "an upstream partition will be requested"
        )
        | condition.execution_failed()
    )
    handled = condition.newly_requested() | condition.newly_updated()
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
