"""Daily partitions of a dataset, and how a range of them runs: in one run."""

from __future__ import annotations

import warnings

from dagster import BackfillPolicy, BetaWarning, DailyPartitionsDefinition

from driftloop.data.contract import Contract


def daily_partitions(contract: Contract) -> DailyPartitionsDefinition:
    end = contract.partitions.end
    return DailyPartitionsDefinition(
        start_date=contract.partitions.start.isoformat(),
        end_date=end.isoformat() if end else None,
        timezone=contract.event_time.timezone,
    )


# A range of partitions runs as one run (features: one DuckDB query per chunk). The retrain
# assets are not partitioned but carry the same policy: `dagster asset materialize
# --partition-range` runs a selection in one run only if every selected asset has it, and
# that is how the whole retraining path (features over a range, then model, eval_report and
# promotion, once) is one command (README, "Step by step with the CLI"). For an unpartitioned
# asset the policy changes nothing else: a backfill materializes it once either way.
ONE_RUN = BackfillPolicy.single_run()
# `backfill_policy` is "beta" in Dagster 1.13 and warns at every asset that sets it.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
