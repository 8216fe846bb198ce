"""Daily partitions of a dataset, in its event-time zone, from the contract's first day."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

from driftloop.contract import Contract


def daily_partitions(contract: Contract) -> DailyPartitionsDefinition:
    end = contract.partitions.end
    return DailyPartitionsDefinition(
        start_date=contract.partitions.start.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone=contract.event_time.timezone,
    )
