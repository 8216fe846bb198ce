"""The "triggers" section of `pipelines.status`: recent retraining runs and why they ran.

Reads the project's Dagster instance (DAGSTER_HOME, default <data root>/dagster_home):
the runs of `<dataset>_retrain`, newest first, with the trigger and reason tags the
retrain sensor and the schedule put on them.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from driftloop.names import DATA_DAY_TAG, TRIGGER_REASON_TAG, TRIGGER_TAG
from pipelines.instance import project_dagster_home

RECENT_RUNS = 5


def retrain_history(dataset: str, limit: int = RECENT_RUNS) -> dict[str, Any]:
    from dagster import DagsterInstance, RunsFilter

    os.environ.setdefault("DAGSTER_HOME", str(project_dagster_home()))
    with DagsterInstance.get() as instance:
        records = instance.get_run_records(
            RunsFilter(job_name=f"{dataset}_retrain"), limit=limit, ascending=False
        )
        runs = [
            {
                "run_id": record.dagster_run.run_id,
                "status": record.dagster_run.status.value,
                "trigger": record.dagster_run.tags.get(TRIGGER_TAG, "manual"),
                "reason": record.dagster_run.tags.get(TRIGGER_REASON_TAG, ""),
                "data_day": record.dagster_run.tags.get(DATA_DAY_TAG),
                "created": datetime.fromtimestamp(
                    record.create_timestamp.timestamp(), UTC
                ).isoformat(timespec="seconds"),
            }
            for record in records
        ]
    triggered = [r for r in runs if r["trigger"] not in ("manual",)]
    return {"last_triggered": triggered[0] if triggered else None, "recent_runs": runs}


def format_retrain_history(data: dict[str, Any]) -> str:
    last = data.get("last_triggered")
    lines = []
    if last is None:
        lines.append("last triggered retrain: (none yet)")
    else:
        lines.append(
            f"last triggered retrain: {last['created']} run {last['run_id'][:8]} "
            f"({last['status']}) by {last['trigger']}: {last['reason']}"
        )
    for run in data.get("recent_runs", []):
        lines.append(
            f"  {run['created']}  {run['run_id'][:8]}  {run['status']:<9} {run['trigger']}"
        )
    return "\n".join(lines)
