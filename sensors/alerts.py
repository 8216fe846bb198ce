"""Alert sensors: failed runs, and per dataset the ledger, blocked partitions, retrains and
the daily monitoring digest, delivered through `AlertsResource` (off until configured).

They read what the loop already writes (the ledger, the lake's BLOCKED markers, the run
records, the monitoring partitions) instead of adding calls to the assets, so an alert can
never fail or slow down the work it reports on.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from dagster import (
    DagsterEvent,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunFailureSensorContext,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from driftloop.alerts import events
from driftloop.alerts.notify import Alert, PostReport
from driftloop.data.contract import Contract
from driftloop.names import DATASET_TAG, TRIGGER_REASON_TAG, TRIGGER_TAG
from resources.alerts import AlertsResource
from resources.lake import LakeResource
from sensors.settings import seconds

OFF = (
    "alerts are off: set DRIFTLOOP_ALERT_WEBHOOK_URL, DRIFTLOOP_ALERT_SMTP_HOST with "
    "DRIFTLOOP_ALERT_EMAIL_TO, or DRIFTLOOP_ALERT_DRY_RUN=1"
)
# On its first evaluation a sensor reports what happened this long before (not all history).
LOOKBACK_SECONDS = 24 * 3600
# The digest waits at most this long for the dataset's queued and running runs to finish.
DIGEST_WAIT_SECONDS = 3 * 3600
BUSY = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]


def _summary(report: PostReport) -> str:
    return (
        f"{len(report.sent)} alert(s) sent in {report.messages} message(s), "
        f"{len(report.duplicate)} duplicate(s), {len(report.waiting)} waiting"
        + (f"; errors: {'; '.join(report.errors)}" if report.errors else "")
    )


def _initial_cursor(now: float) -> dict:
    since = now - LOOKBACK_SECONDS
    return {"ledger": f"{int(since * 1e9):020d}", "blocked": since, "runs": since, "digest": ""}


def _retrain_alerts(
    context: SensorEvaluationContext, dataset: str, job_name: str, state: dict, base_url: str
) -> list[Alert]:
    after = datetime.fromtimestamp(state["runs"], tz=UTC)
    records = context.instance.get_run_records(
        RunsFilter(job_name=job_name, created_after=after), ascending=True
    )
    found = []
    for record in records:
        run = record.dagster_run
        trigger = run.tags.get(TRIGGER_TAG, "manual")
        reason = run.tags.get(TRIGGER_REASON_TAG, "")
        found.append(events.retrain_alert(dataset, run.run_id, trigger, reason, base_url))
        state["runs"] = max(state["runs"], record.create_timestamp.timestamp())
    return found


def _busy_runs(context: SensorEvaluationContext, dataset: str) -> list[str]:
    """The dataset's runs queued or in progress (its jobs, or runs tagged with it)."""
    records = context.instance.get_run_records(RunsFilter(statuses=BUSY))
    return [
        f"{r.dagster_run.job_name} ({r.dagster_run.run_id[:8]}, {r.dagster_run.status.value})"
        for r in records
        if r.dagster_run.job_name.startswith(f"{dataset}_")
        or r.dagster_run.tags.get(DATASET_TAG) == dataset
    ]


def _digest(
    context: SensorEvaluationContext, alerts: AlertsResource, paths, state: dict, base_url: str
) -> list[Alert]:
    """The day's digest, once the dataset's runs are done (a backlog being scored would
    otherwise wait a day), or after DIGEST_WAIT_SECONDS saying what still runs."""
    today = datetime.now(UTC).date()
    if alerts.outbox().seen(events.digest_key(paths.dataset, today)):
        return []
    busy = _busy_runs(context, paths.dataset)
    if busy:
        since = state.setdefault("digest_waiting_since", time.time())
        if time.time() - since < DIGEST_WAIT_SECONDS:
            context.log.info(f"digest waits for {len(busy)} run(s): {', '.join(busy[:5])}")
            return []
    digest, through = events.digest_alert(paths, today, state["digest"], base_url, busy)
    state["digest"] = through
    state.pop("digest_waiting_since", None)
    return [digest] if digest else []


def build_alert_sensor(contract: Contract, retrain_job_name: str) -> SensorDefinition:
    name = contract.name

    @sensor(
        name=f"{name}_alerts",
        minimum_interval_seconds=seconds("DRIFTLOOP_ALERT_SENSOR_SECONDS", 30),
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            f"Sends {name}'s promotions, refusals, rollbacks, canary changes, blocked "
            "partitions, launched retrains and a daily monitoring digest to the alert "
            "channels (webhook, email), each once."
        ),
    )
    def dataset_alerts(
        context: SensorEvaluationContext, alerts: AlertsResource, lake: LakeResource
    ) -> SkipReason:
        if not alerts.enabled:
            return SkipReason(OFF)
        started = time.time()
        state = json.loads(context.cursor) if context.cursor else _initial_cursor(started)
        paths = lake.paths(name)
        base = alerts.base_url()
        found, state["ledger"] = events.new_ledger_alerts(paths, state["ledger"], base)
        found += events.blocked_alerts(paths, base, state["blocked"])
        # A marker written during this scan is seen again next time; the outbox drops it.
        state["blocked"] = started - 5
        found += _retrain_alerts(context, name, retrain_job_name, state, base)
        found += _digest(context, alerts, paths, state, base)
        report = alerts.post(found)
        context.update_cursor(json.dumps(state))
        for alert in found:
            context.log.info(f"alert {alert.key}: {alert.title}")
        return SkipReason(_summary(report))

    return dataset_alerts


def step_error(event: DagsterEvent) -> str:
    """A failed step's error in the words of the code that raised it: a `Failure`'s
    description, else the innermost cause (Dagster wraps user errors in its own)."""
    data = event.step_failure_data
    if data.user_failure_data is not None and data.user_failure_data.description:
        return data.user_failure_data.description
    error = data.error
    while error is not None and error.cause is not None:
        error = error.cause
    return "" if error is None else error.message


def build_run_failure_alert_sensor() -> SensorDefinition:
    """One alert per failed run of any job in the code location."""

    # All code locations: a run executed by the CLI (`dg launch --job`) has no code
    # location of its own, and its failure must alert as a launched run's does.
    @run_failure_sensor(
        name="driftloop_run_failure_alerts",
        minimum_interval_seconds=seconds("DRIFTLOOP_ALERT_SENSOR_SECONDS", 30),
        default_status=DefaultSensorStatus.RUNNING,
        monitor_all_code_locations=True,
        description="Sends one alert per failed run, with its error and a link to the run.",
    )
    def run_failure_alerts(context: RunFailureSensorContext, alerts: AlertsResource) -> None:
        if not alerts.enabled:
            return
        run = context.dagster_run
        steps = [
            (event.step_key or "", step_error(event)) for event in context.get_step_failure_events()
        ]
        message = context.failure_event.message or ""
        alert = events.run_failure_alert(
            run.job_name, run.run_id, message, alerts.base_url(), steps
        )
        report = alerts.post([alert])
        context.log.info(f"{alert.title}: {_summary(report)}")

    return run_failure_alerts
