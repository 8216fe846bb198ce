"""One day's drift as the lake stores it: the per-column table (Evidently's rules) and the
summary beside it, to which the drift asset adds the calibrated verdict."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.floats import json_float
from driftloop.monitoring.drift import column_drift, drift_table
from driftloop.monitoring.signals import (
    DRIFT_SHARE_THRESHOLD,
    PREDICTION,
    SUMMARY_FILE,
    TOP_COLUMNS,
    feature_kinds,
)
from driftloop.names import DRIFT_TABLE
from driftloop.paths import DatasetPaths

# --------------------------------------------------------------------------- drift


@dataclass(frozen=True)
class DriftOutcome:
    """One day's drift: the per-column table, the summary written beside it, the verdict."""

    table: pd.DataFrame
    summary: dict[str, Any]

    @property
    def breached(self) -> bool:
        return bool(self.summary["breached"])


def compute_drift(
    contract: Contract,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    day: str,
    version: str,
    window: list[str],
    drift_share_threshold: float = DRIFT_SHARE_THRESHOLD,
    prediction_drift_breaches: bool = True,
) -> DriftOutcome:
    """Drift of every feature (Evidently's rules, all rows) and of the prediction.

    Breached when the share of drifted features reaches ``drift_share_threshold``
    (Evidently's dataset drift), or - with ``prediction_drift_breaches`` - when the
    prediction itself drifted.
    """
    import pandas as pd

    kinds = feature_kinds(contract)
    features = drift_table(reference, current, kinds, drift_share_threshold)
    prediction = column_drift(reference[PREDICTION], current[PREDICTION], "numeric", PREDICTION)
    rows = [{**c.to_dict(), "is_prediction": False} for c in features.columns]
    rows.append({**prediction.to_dict(), "is_prediction": True})
    table = pd.DataFrame(rows)
    table["strength"] = [c.strength for c in [*features.columns, prediction]]
    table.insert(0, "day", day)
    breached = features.dataset_drifted or (prediction_drift_breaches and prediction.drifted)
    summary = {
        "day": day,
        "champion_version": str(version),
        "window": [window[0], window[-1]] if window else [],
        "share_drifted": float(features.share_drifted),
        "dataset_drifted": bool(features.dataset_drifted),
        "prediction_drifted": bool(prediction.drifted),
        "prediction_drift_score": json_float(prediction.score),
        "prediction_drift_method": prediction.method,
        "breached": bool(breached),
        "drifted_features": [c.column for c in features.columns if c.drifted],
        "top_columns": features.top[:TOP_COLUMNS],
        "thresholds": {
            "drift_share": drift_share_threshold,
            "prediction_drift_breaches": prediction_drift_breaches,
        },
        "reference_rows": len(reference),
        "current_rows": len(current),
        "report_path": None,
    }
    return DriftOutcome(table=table, summary=summary)


def summary_path(paths: DatasetPaths, day: str) -> Path:
    return paths.partition_file(DRIFT_TABLE, day).parent / SUMMARY_FILE


def html_report_path(paths: DatasetPaths, day: str) -> Path:
    return paths.reports / "drift" / f"{day}.html"


def write_drift(paths: DatasetPaths, outcome: DriftOutcome) -> tuple[Path, Path]:
    """The per-column table, then the summary (its presence means the day is complete)."""
    day = outcome.summary["day"]
    table = write_parquet_atomic(outcome.table, paths.partition_file(DRIFT_TABLE, day))
    summary = write_text_atomic(
        json.dumps(outcome.summary, indent=2, default=str) + "\n", summary_path(paths, day)
    )
    return table, summary


def read_drift_summary(paths: DatasetPaths, day: str) -> dict[str, Any] | None:
    path = summary_path(paths, day)
    if not path.exists():
        return None
    return json.loads(path.read_text())
