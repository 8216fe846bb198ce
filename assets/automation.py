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
a daily run of its own (pipelines/ingest_daily.py). The automation leaves those days to
it: the evaluation that first sees raw days an ingest run wrote waits (the daily run may
not have started yet; the next evaluation sees it in progress), and a partition counts as
handled once an upstream partition was updated by such a daily run, whether it was built
or skipped (performance skips a day whose labels are not due). What that daily run failed
to build is failed in the instance and requested again; if the ingest run died before its
daily run started, the days are requested one evaluation later.

What the automation cannot see stays in sensors: files in the landing zone
(sensors/new_data.py), the champion alias in MLflow and the lake's data clock that makes
labels due (sensors/catch_up.py).
"""

from __future__ import annotations

from dagster import AutomationCondition, Backoff, RetryPolicy

from driftloop.names import TRIGGER_TAG

AUTOMATED_ASSETS = ("features", "predictions", "drift_report", "performance")
# The ingest run builds its days' daily assets in runs of its own (pipelines/ingest_daily.py),
# tagged with its run id; the ingest run itself carries TRIGGER_TAG=new_data
# (sensors/new_data.py). Both names are spelled here, below the pipelines that set them.
INGEST_RUN_TAG = "driftloop/ingest_run"
INGEST_TRIGGER_VALUE = "new_data"


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
            condition.any_new_update_has_run_tags(tag_keys={INGEST_RUN_TAG})
        ).with_label("built or skipped by an ingest run's daily run")
    )
    # The evaluation that first sees an ingest run's raw days comes before that run's daily
    # run may have started: it waits one evaluation, by which time the daily run is in
    # progress (or, if the ingest run died first, the days are requested then). First in
    # the conjunction: an operand is evaluated only on what the ones before it left, and
    # this one must be evaluated on every tick to know what is new since the last.
    ingested = condition.any_deps_match(
        condition.any_new_update_has_run_tags(tag_values={TRIGGER_TAG: INGEST_TRIGGER_VALUE})
    ).with_label("an ingest run just wrote an upstream partition")
    return (
        ~ingested
        & trigger.since(handled).with_label("inputs changed or last run failed, since handled")
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
    ).with_label("keep_current")


def store_retry_policy() -> RetryPolicy:
    """Steps that talk to a store (MLflow's tracking store, the registry) try again after 5,
    10 and 20 s: a store that restarts or drops connections for a moment heals inside the
    run. A longer outage fails the run, and the automation requests it again."""
    return RetryPolicy(max_retries=3, delay=5, backoff=Backoff.EXPONENTIAL)
