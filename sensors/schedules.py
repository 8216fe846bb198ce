"""The calendar: a weekly retraining run per dataset, whatever the monitors say."""

from __future__ import annotations

import os

from dagster import DefaultScheduleStatus, ScheduleDefinition

from driftloop.data.contract import Contract
from driftloop.names import TRIGGER_REASON_TAG, TRIGGER_TAG


def build_weekly_retrain_schedule(contract: Contract, job_name: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=f"{contract.name}_weekly_retrain",
        job_name=job_name,
        cron_schedule=os.environ.get("DRIFTLOOP_RETRAIN_CRON", "0 4 * * 1"),  # Monday 04:00
        execution_timezone=contract.event_time.timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        tags={TRIGGER_TAG: "schedule", TRIGGER_REASON_TAG: "weekly retrain"},
        description=f"Retrains {contract.name} every week, whatever the monitors say.",
    )
