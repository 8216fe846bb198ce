"""The calendar backstop: a periodic retraining run per dataset, off unless a cron is set.

The retraining trigger decides when a retrain pays; a fixed calendar beside it would retrain
whatever the monitors say. Setting DRIFTLOOP_RETRAIN_CRON (e.g. "0 4 * * 1") turns the
schedule on for a team that wants a calendar as well; it can also be started in the UI.
"""

from __future__ import annotations

import os

from dagster import DefaultScheduleStatus, ScheduleDefinition

from driftloop.data.contract import Contract
from driftloop.names import TRIGGER_REASON_TAG, TRIGGER_TAG

DEFAULT_CRON = "0 4 * * 1"  # Monday 04:00 in the contract's zone


def build_weekly_retrain_schedule(contract: Contract, job_name: str) -> ScheduleDefinition:
    cron = os.environ.get("DRIFTLOOP_RETRAIN_CRON")
    return ScheduleDefinition(
        name=f"{contract.name}_weekly_retrain",
        job_name=job_name,
        cron_schedule=cron or DEFAULT_CRON,
        execution_timezone=contract.event_time.timezone,
        default_status=DefaultScheduleStatus.RUNNING if cron else DefaultScheduleStatus.STOPPED,
        tags={TRIGGER_TAG: "schedule", TRIGGER_REASON_TAG: "calendar retrain"},
        description=(
            f"Retrains {contract.name} on a calendar, whatever the monitors say; off unless "
            "DRIFTLOOP_RETRAIN_CRON is set."
        ),
    )
