"""Shared by the monitoring assets: one warning check result per day (in one-day and range
runs alike), the champion's monitor (calibration, estimator, holdout; cached per version)
and small metadata helpers."""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
import math
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MetadataValue,
    PreviewWarning,
    TableColumn,
    TableRecord,
    TableSchema,
)

from assets.partitions import daily_partitions
from assets.predictions import Champion, skip_outputs
from driftloop.data.contract import Contract
from driftloop.monitoring.champion import (
    ChampionMonitor,
    champion_monitor,
    holdout_days,
    importance_of,
)
from driftloop.monitoring.signals import PREDICTION, window_frame
from driftloop.names import FEATURES_TABLE
from driftloop.paths import DatasetPaths
from resources.mlflow import MlflowResource


def check_spec(key: AssetKey, name: str, description: str, contract: Contract) -> AssetCheckSpec:
    with warnings.catch_warnings():
        # partitions_def on a check spec is a preview in 1.13: one result per day.
        warnings.simplefilter("ignore", PreviewWarning)
        return AssetCheckSpec(
            name,
            asset=key,
            blocking=False,
            description=description,
            partitions_def=daily_partitions(contract),
        )


def champion_monitor_for(
    contract: Contract,
    paths: DatasetPaths,
    champion: Champion,
    mlflow: MlflowResource,
    reference: "pd.DataFrame | None",
) -> ChampionMonitor:
    """The champion's calibration (given its reference), estimator and holdout (cached per
    version)."""
    days = holdout_days(champion.tags)
    holdout, _ = window_frame(
        contract, paths, days, champion.number, champion.score, with_label=True
    )
    client = mlflow.client()
    return champion_monitor(
        contract,
        paths,
        champion.number,
        champion.tags,
        reference,
        importance_of(client, champion.version.run_id),
        holdout,
        holdout[PREDICTION].to_numpy(dtype="float64") if len(holdout) else [],
        contract.retraining,
    )


def require_features(name: str, paths: DatasetPaths, days: list[str]) -> None:
    """Fail with what to materialize when a day has no features partition."""
    absent = [d for d in days if not paths.partition_file(FEATURES_TABLE, d).exists()]
    if absent:
        raise Failure(
            description=f"{name}: no features partition for {', '.join(absent)}; "
            f"materialize {name}/features and {name}/predictions first"
        )


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def day_span(days: list[str]) -> list[str]:
    return [days[0], days[-1]] if days else []


def check_results(
    context: AssetExecutionContext,
    key: AssetKey,
    check: str,
    results: dict[str, tuple[bool, str, dict[str, Any]]],
    asset_output_yielded: bool = True,
) -> Iterator[Any]:
    """One WARN result per day: AssetCheckResult in a one-day run (the run's partition);
    else the check output once and an AssetCheckEvaluation per day with its partition."""
    if AssetCheckKey(key, check) not in context.selected_asset_check_keys:
        return
    if context.has_partition_key and asset_output_yielded and len(results) == 1:
        passed, description, metadata = next(iter(results.values()))
        yield AssetCheckResult(
            check_name=check,
            passed=passed,
            severity=AssetCheckSeverity.WARN,
            description=description,
            metadata=metadata,
        )
        return
    yield from skip_outputs(context)
    for day, (passed, description, metadata) in results.items():
        yield AssetCheckEvaluation(
            asset_key=key,
            check_name=check,
            passed=passed,
            metadata=metadata,
            severity=AssetCheckSeverity.WARN,
            description=description,
            blocking=False,
            partition=day,
        )


def drift_table_metadata(table: "pd.DataFrame") -> MetadataValue:
    schema = TableSchema(
        columns=[
            TableColumn("column", "string"),
            TableColumn("kind", "string"),
            TableColumn("method", "string"),
            TableColumn("score", "float"),
            TableColumn("threshold", "float"),
            TableColumn("drifted", "bool"),
        ]
    )
    records = [
        TableRecord(
            {
                "column": str(row.column),
                "kind": str(row.kind),
                "method": str(row.method),
                "score": _nan_to_none(round(float(row.score), 6)),
                "threshold": _nan_to_none(float(row.threshold)),
                "drifted": bool(row.drifted),
            }
        )
        for row in table.sort_values("strength", ascending=False, na_position="last").itertuples()
    ]
    return MetadataValue.table(records, schema=schema)


def calibrated_metadata(summary: dict[str, Any]) -> dict[str, Any]:
    estimated = summary["estimated"]
    meta: dict[str, Any] = {
        "drift_score": float(summary["drift_score"]),
        "drift_threshold": float(summary["drift_threshold"]),
        "prediction_excess": float(summary["prediction_excess"]),
        "estimated_breached": bool(summary["estimated_breached"]),
        "estimated_pool_rows": int(estimated["rows"]),
        "ranked_features": _ranked_table(summary["ranked_features"]),
    }
    for key in ("value", "floor", "reference"):
        value = estimated[key]
        if isinstance(value, float) and math.isfinite(value):
            meta[f"estimated_{estimated['metric']}_{key}".replace("_value", "")] = value
    return meta


def _ranked_table(rows: list[dict[str, Any]]) -> MetadataValue:
    schema = TableSchema(
        columns=[
            TableColumn("column", "string"),
            TableColumn("weight", "float", description="the champion's importance share"),
            TableColumn("excess", "float", description="distance / calibrated bound - 1"),
            TableColumn("contribution", "float", description="weight x excess"),
        ]
    )
    records = [
        TableRecord({k: (round(float(v), 6) if k != "column" else str(v)) for k, v in r.items()})
        for r in rows
    ]
    return MetadataValue.table(records, schema=schema)
