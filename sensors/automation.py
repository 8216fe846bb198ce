"""The automation sensor of a dataset: Dagster evaluates the daily assets' conditions.

The conditions themselves, and what they rebuild, are in assets/automation.py.
"""

from __future__ import annotations

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from assets.automation import AUTOMATED_ASSETS
from driftloop.data.contract import Contract
from driftloop.names import TRIGGER_TAG
from sensors.settings import seconds, switched_on

AUTOMATION_SECONDS_ENV = "DRIFTLOOP_AUTOMATION_SECONDS"
AUTOMATION_SECONDS = 5
# DRIFTLOOP_AUTOMATION=off starts the sensor stopped: a run driven by hand (a test, a
# debugging session) then has the instance to itself until the sensor is switched on.
AUTOMATION_ENV = "DRIFTLOOP_AUTOMATION"


def automation_sensor_name(contract: Contract) -> str:
    return f"{contract.name}_automation"


def build_automation_sensor(contract: Contract) -> AutomationConditionSensorDefinition:
    """Evaluates the dataset's automation conditions every few seconds (the daemon's)."""
    keys = [[contract.name, name] for name in AUTOMATED_ASSETS]
    return AutomationConditionSensorDefinition(
        automation_sensor_name(contract),
        target=AssetSelection.assets(*keys),
        default_status=(
            DefaultSensorStatus.RUNNING
            if switched_on(AUTOMATION_ENV, default=True)
            else DefaultSensorStatus.STOPPED
        ),
        # Short: the interval adds to the time from a landed day to its scores; a tick
        # reads the event log only.
        minimum_interval_seconds=seconds(AUTOMATION_SECONDS_ENV, AUTOMATION_SECONDS),
        # Backfills (Dagster's default): a tick that asks for many days of an asset becomes
        # one backfill, which its single-run backfill policy turns into one run per block of
        # days. As plain runs, each day was a run (and a process) of its own.
        emit_backfills=True,
        # The automation requests a failed partition again itself: the instance's run
        # retries (deploy/dagster.yaml) would launch a second run beside it.
        run_tags={TRIGGER_TAG: "automation", "dagster/max_retries": "0"},
        description=(
            f"Keeps every landed {contract.name} day's features, predictions, drift report "
            "and performance current: rebuilds what an upstream change made stale and what "
            "failed, without new data."
        ),
    )
