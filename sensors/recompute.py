"""Recomputed history is not news: the tag on recompute runs, and how the trigger reads it.

Runs that rebuild days which had been built before (a correction, a late day inside the
rolling windows) carry `driftloop/recompute=true` (sensors/stale_days.py). The retraining
trigger decides only when the newest drift or performance materialization of the dataset
came from a run without that tag: a tick after a recompute, and before the next new day
or newly due labels, decides nothing. The recomputed verdicts still count once news
arrives, since they are then the truth about those days.
"""

from __future__ import annotations

from dagster import AssetKey, DagsterInstance

from driftloop.data.contract import Contract

RECOMPUTE_TAG = "driftloop/recompute"
SIGNAL_ASSETS = ("drift_report", "performance")


def latest_signal_is_recompute(contract: Contract, instance: DagsterInstance) -> bool:
    """True when the newest drift/performance materialization came from a recompute run."""
    newest = None
    for name in SIGNAL_ASSETS:
        records = instance.fetch_materializations(AssetKey([contract.name, name]), limit=1).records
        if records and (newest is None or records[0].storage_id > newest.storage_id):
            newest = records[0]
    if newest is None:
        return False
    run = instance.get_run_by_id(newest.event_log_entry.run_id)
    return run is not None and run.tags.get(RECOMPUTE_TAG) == "true"
