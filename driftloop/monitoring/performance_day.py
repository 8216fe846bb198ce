"""One due day of the performance table: the day's metrics by the model that scored it and the
champion's pooled verdict beside them, written to the lake as that day's partition."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.faults import fault_point
from driftloop.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, metric_names
from driftloop.monitoring.champion import ChampionMonitor, holdout_days
from driftloop.monitoring.drift_outcome import read_drift_summary
from driftloop.monitoring.performance import PooledPerformance
from driftloop.monitoring.realised import holdout_reference, realised_performance
from driftloop.monitoring.signals import (
    MIN_LABELLED_ROWS,
    PREDICTION,
    labelled_predictions,
    labels_due,
    labels_due_at,
    trailing_days,
    training_days,
    window_frame,
)
from driftloop.names import PERFORMANCE_TABLE
from driftloop.paths import DatasetPaths


class ModelVersion(Protocol):
    """A registered model version (``version``, MLflow's record of it) that can score a
    features frame."""

    version: Any

    @property
    def number(self) -> str: ...

    @property
    def tags(self) -> dict[str, str]: ...

    def score(self, frame: Any, threads: int = 0) -> Any: ...


@dataclass(frozen=True)
class DaySettings:
    """How a day's own metrics are judged (the performance asset's config)."""

    tolerance: float | None = None
    relative_tolerance: bool | None = None
    min_labelled_rows: int = MIN_LABELLED_ROWS
    threshold: float = 0.5


@dataclass(frozen=True)
class PerformanceDay:
    """The day's row as written to the lake, and where."""

    row: dict[str, Any]
    path: Path

    @property
    def has_reference(self) -> bool:
        return not math.isnan(self.row["reference"])

    def numbers(self, task: Any) -> dict[str, Any]:
        """The row's figures for a person: metrics, the day's and the pool's floors."""
        primary = self.row["primary_metric"]
        numbers: dict[str, Any] = {m: float(self.row[m]) for m in metric_names(task)}
        return numbers | {
            "model_version": self.row["model_version"],
            "rows": int(self.row["rows"]),
            "labelled_rows": int(self.row["labelled_rows"]),
            "reference": float(self.row["reference"]),
            "floor": float(self.row["floor"]),
            "breached": bool(self.row["breached"]),
            "pooled_value": float(self.row["pooled_value"]),
            "pooled_floor": float(self.row["pooled_floor"]),
            "pooled_rows": int(self.row["pooled_rows"]),
            "pooled_days": int(self.row["pooled_days"]),
            "primary_metric": primary,
            # What the drift report estimated for the same trailing days, before labels.
            f"estimated_{primary}": float(self.row["estimated_before_labels"]),
        }

    def check_numbers(self) -> dict[str, Any]:
        """The figures the performance floor check shows."""
        return {
            "value": float(self.row["pooled_value"]),
            "floor": float(self.row["pooled_floor"]),
            "reference": float(self.row["pooled_reference"]),
            "pooled_rows": int(self.row["pooled_rows"]),
            "daily_value": float(self.row["value"]),
        }

    def description(self) -> str:
        return describe(self.row)


def describe(row: dict[str, Any]) -> str:
    """A performance row in a sentence: the day's metric, then the champion's pooled verdict."""
    metric, value = row["primary_metric"], row["value"]
    day = f"{row['day']}: the day's {metric} " + (
        "undefined" if math.isnan(value) else f"{value:.4f}"
    )
    day += f" on {row['labelled_rows']} labels (v{row['model_version']})"
    pooled = row["pooled_value"]
    if math.isnan(pooled):
        return f"{day}; champion v{row['champion_version']}: no labelled pool yet: not judged"
    relation = "below" if HIGHER_IS_BETTER[metric] else "above"
    state = f"{relation} the floor" if row["breached"] else "within the floor"
    return (
        f"{day}; champion v{row['champion_version']} over the last {row['pooled_days']} "
        f"labelled days ({row['pooled_rows']} rows): {metric} {pooled:.4f} {state} "
        f"{row['pooled_floor']:.4f} (holdout {row['pooled_reference']:.4f}, floor from its "
        "bootstrap at that row count)"
    )


def pooled_realised(
    contract: Contract,
    paths: DatasetPaths,
    champion: ModelVersion,
    monitor: ChampionMonitor,
    day: str,
    clock: datetime | None,
) -> PooledPerformance:
    """The champion's realised metric over the trailing days whose labels are due (after
    its holdout), against the floor at the pool's size."""
    import numpy as np

    policy = contract.retraining
    after = max(holdout_days(champion.tags) or [""])
    days = [
        d
        for d in trailing_days(day, policy.performance_window_days)
        if d > after and labels_due(contract, d, clock)
    ]
    frames = [
        labelled_predictions(contract, paths, d, champion.number, champion.score) for d in days
    ]
    frames = [f for f in frames if len(f)]
    labels = np.concatenate(
        [f["label"].to_numpy("float64", na_value=np.nan) for f in frames] or [[]]
    )
    scores = np.concatenate([f[PREDICTION].to_numpy("float64") for f in frames] or [[]])
    return monitor.realised(labels, scores, len(frames), policy.performance_confidence)


def estimated_before(paths: DatasetPaths, day: str) -> float:
    """The estimate the drift report of ``day`` made before its labels (NaN if none)."""
    summary = read_drift_summary(paths, day) or {}
    value = (summary.get("estimated") or {}).get("value")
    return float(value) if isinstance(value, int | float) else math.nan


def performance_day(
    contract: Contract,
    paths: DatasetPaths,
    day: str,
    clock: datetime | None,
    *,
    client: Any,
    model: ModelVersion,
    champion: ModelVersion,
    monitor: ChampionMonitor,
    settings: DaySettings,
) -> PerformanceDay:
    """One due day: the day's metrics by the model that scored it against its own holdout
    (a later champion may have trained on the day), and the champion's pooled verdict.
    ``client`` is an MLflow client, asked for the run of ``model.version``."""
    import pandas as pd  # on use: loading the code location must not import pandas

    primary = PRIMARY_METRIC[contract.task]
    reference = holdout_reference(client, model.version, primary)
    frame, sources = window_frame(
        contract, paths, [day], model.number, model.score, with_label=True
    )
    row = realised_performance(
        contract,
        day,
        frame["label"].to_numpy(dtype="float64", na_value=math.nan),
        frame[PREDICTION].to_numpy(dtype="float64"),
        version=model.number,
        reference=reference,
        tolerance=settings.tolerance,
        relative=settings.relative_tolerance,
        min_labelled_rows=settings.min_labelled_rows,
        threshold=settings.threshold,
    )
    pooled = pooled_realised(contract, paths, champion, monitor, day, clock)
    row |= {
        "daily_breached": bool(row["breached"]),
        "breached": bool(pooled.breached),
        "champion_version": champion.number,
        **{f"pooled_{k}": v for k, v in pooled.to_dict().items() if k != "breached"},
        "scored_from": sources.get(day, "scored"),
        "in_training_window": day in set(training_days(model.tags)),
        "data_clock": clock.isoformat(sep=" ") if clock else None,
        "labels_due_at": labels_due_at(contract, day).isoformat(sep=" "),
        "estimated_before_labels": estimated_before(paths, day),
    }
    path = write_parquet_atomic(pd.DataFrame([row]), paths.partition_file(PERFORMANCE_TABLE, day))
    fault_point("daily_performance")
    return PerformanceDay(row=row, path=path)
