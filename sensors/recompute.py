"""Recomputed history is not news: which signal materializations rebuild a day, and how the
trigger reads them.

A day's drift or performance is rebuilt when its inputs changed after it was first built
(a correction, a late day inside the rolling windows: the automation in
assets/automation.py) or when a run says so with the tag `driftloop/recompute=true`. The
retraining trigger decides only when the newest drift or performance materialization of
the dataset is news: the first materialization of its day, from a run without that tag.
A tick after a recompute, and before the next new day or newly due labels, decides
nothing. The recomputed verdicts still count once news arrives, since they are then the
truth about those days.
"""

from __future__ import annotations

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from driftloop.data.contract import Contract

RECOMPUTE_TAG = "driftloop/recompute"
SIGNAL_ASSETS = ("drift_report", "performance")


def latest_signal_is_recompute(contract: Contract, instance: DagsterInstance) -> bool:
    """True when the newest drift/performance materialization rebuilt a day (module docstring)."""
    newest = None
    for name in SIGNAL_ASSETS:
        records = instance.fetch_materializations(AssetKey([contract.name, name]), limit=1).records
        if records and (newest is None or records[0].storage_id > newest.storage_id):
            newest = records[0]
    if newest is None:
        return False
    run = instance.get_run_by_id(newest.event_log_entry.run_id)
    if run is not None and run.tags.get(RECOMPUTE_TAG) == "true":
        return True
    day = newest.partition_key
    if day is None:
        return False
    earlier = instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=newest.asset_key, asset_partitions=[day], before_storage_id=newest.storage_id
        ),
        limit=1,
    ).records
    return bool(earlier)
