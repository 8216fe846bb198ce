"""Daily partitions of a dataset, and how a backfill of many days splits into runs."""

from __future__ import annotations

import os
import warnings

from dagster import BackfillPolicy, BetaWarning, DailyPartitionsDefinition

from driftloop.data.contract import Contract

DAYS_PER_RUN_ENV = "DRIFTLOOP_BACKFILL_DAYS_PER_RUN"


def daily_partitions(contract: Contract) -> DailyPartitionsDefinition:
    end = contract.partitions.end
    return DailyPartitionsDefinition(
        start_date=contract.partitions.start.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone=contract.event_time.timezone,
    )


def range_policy() -> BackfillPolicy:
    """How a backfill of the partitioned assets splits into runs.

    Unset ($DRIFTLOOP_BACKFILL_DAYS_PER_RUN): the whole range in one run, which loads the
    code location, the champion and DuckDB once (best where runs compete for two cores),
    and which `dg launch --partition-range` requires. Set to N: runs of at
    most N days each, which the daemon's run queue starts as slots free up (at most
    `max_concurrent_runs` at once: deploy/dagster.yaml), so a year spreads over the
    instance's run workers.
    """
    days = os.environ.get(DAYS_PER_RUN_ENV, "").strip()
    if not days:
        return BackfillPolicy.single_run()
    if not days.isdigit() or int(days) < 1:
        raise ValueError(f"{DAYS_PER_RUN_ENV}={days!r}: expected a whole number of days >= 1")
    return BackfillPolicy.multi_run(int(days))


# The retrain assets are not partitioned but carry the single-run policy: `dg launch
# --partition-range` runs a selection in one run only if every selected asset has
# it, and that is how the whole retraining path (features over a range, then model,
# eval_report and promotion, once) is one command (docs/cli.md, "Land, ingest, train, promote"). For
# an unpartitioned asset the policy changes nothing else: a backfill materializes it once.
ONE_RUN = BackfillPolicy.single_run()

# `backfill_policy` is marked beta on `@asset` in Dagster 1.13 (not on `@multi_asset`) and
# warns at every asset that sets it; the policy is what `--partition-range` and multi-run
# backfills need, so the warning says nothing a user can act on.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
