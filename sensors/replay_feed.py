"""The demo's replay feed: the embedded 2013 flights arrive in the landing zone day by day.

On its first tick it drops a head start of DRIFTLOOP_REPLAY_INITIAL_DAYS days (enough to
train a first champion), then one more day every DRIFTLOOP_REPLAY_SECONDS seconds (default
60), so the year plays out in the UI. DRIFTLOOP_REPLAY=off switches it off (it is only
built for the embedded datasets; real data simply lands in the landing zone).

Why a sensor and not Dagster's automation: it plays the upstream system, writing files into
the landing zone on a clock; it builds no asset.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from driftloop.data.contract import Contract
from driftloop.data.replay import FIRST_DAY, REPLAYABLE, replay_days, replay_next_day, replayed_days
from resources.lake import LakeResource
from sensors.settings import positive_int, seconds, switched_on

DEFAULT_INITIAL_DAYS = 35  # five weeks: enough for a first model that beats the baseline


def build_replay_sensor(contract: Contract) -> SensorDefinition | None:
    if contract.name not in REPLAYABLE:
        return None
    initial_days = positive_int("DRIFTLOOP_REPLAY_INITIAL_DAYS", DEFAULT_INITIAL_DAYS)
    running = switched_on("DRIFTLOOP_REPLAY", default=True)

    @sensor(
        name=f"{contract.name}_replay_feed",
        minimum_interval_seconds=seconds("DRIFTLOOP_REPLAY_SECONDS", 60),
        default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
        description=(
            f"Demo feed: drops the next day of the embedded {contract.name} data into the "
            "landing zone (a head start on the first tick). Off with DRIFTLOOP_REPLAY=off."
        ),
    )
    def replay_feed(context: SensorEvaluationContext, lake: LakeResource) -> SkipReason:
        paths = lake.paths(contract.name)
        if not replayed_days(paths):
            files = replay_days(paths, FIRST_DAY, initial_days)
            last = FIRST_DAY + timedelta(days=initial_days - 1)
            message = f"head start: replayed {FIRST_DAY}..{last} ({len(files)} files)"
        else:
            landed = replay_next_day(paths)
            message = f"replayed {landed.name}" if landed else "the whole year has been replayed"
        context.log.info(message)
        # The feed launches nothing itself: the new-data sensor notices the files.
        return SkipReason(message)

    return replay_feed
