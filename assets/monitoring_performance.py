"""`<dataset>/performance`: the champion's realised metric once labels are due, per day and
pooled over the trailing labelled days against the floor its holdout's bootstrap sets at
that row count (``driftloop.monitoring.performance``). A day whose labels are not due is
skipped with a log line saying when they will be; a range run materializes exactly the
due days. Check ``performance_floor`` warns (never blocks), one result per day."""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    Config,
    Failure,
    MetadataValue,
)
from pydantic import Field

from assets.monitoring_checks import champion_monitor_for, check_results
from assets.predictions import Champion, resolve_champion, skip_outputs
from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, metric_names
from driftloop.monitoring.champion import (
    ChampionMonitor,
    holdout_days,
)
from driftloop.monitoring.drift_outcome import read_drift_summary
from driftloop.monitoring.performance import PooledPerformance
from driftloop.monitoring.signals import (
    FEATURES_TABLE,
    MIN_LABELLED_ROWS,
    MODEL_VERSION,
    PERFORMANCE_TABLE,
    PREDICTION,
    PREDICTIONS_TABLE,
    data_clock,
    holdout_reference,
    labelled_predictions,
    labels_due,
    labels_due_at,
    realised_performance,
    trailing_days,
    training_days,
    window_frame,
)
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

PERFORMANCE_CHECK = "performance_floor"


class PerformanceConfig(Config):
    tolerance: float | None = Field(
        default=None,
        ge=0,
        description="Allowed loss vs the holdout metric; default 0.05 absolute for "
        "higher-is-better metrics, 10% relative for error metrics",
    )
    relative_tolerance: bool | None = Field(
        default=None, description="Tolerance as a fraction of the holdout value"
    )
    min_labelled_rows: int = Field(
        default=MIN_LABELLED_ROWS, ge=1, description="Fewer labels than this never breach"
    )
    threshold: float = Field(default=0.5, description="Decision threshold (binary)")


# ---------------------------------------------------------------------- performance


def _performance_description(row: dict[str, Any]) -> str:
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


def _model_that_scored(
    paths: DatasetPaths,
    day: str,
    champion: Champion,
    models: dict[str, Champion],
    client: Any,
    mlflow: MlflowResource,
) -> Champion:
    """The version whose predictions are stored for ``day`` (the champion when unscored)."""
    import pyarrow.parquet as pq

    path = paths.partition_file(PREDICTIONS_TABLE, day)
    if not path.exists():
        return champion
    versions = set(pq.read_table(path, columns=[MODEL_VERSION]).column(0).to_pylist())
    if len(versions) != 1:
        return champion
    number = str(versions.pop())
    if number not in models:
        version = client.get_model_version(champion.name, number)
        models[number] = Champion(champion.name, version, mlflow)
    return models[number]


def _pooled_realised(
    contract: Contract,
    paths: DatasetPaths,
    champion: Champion,
    monitor: ChampionMonitor,
    day: str,
    clock: Any,
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


def _estimated_before(paths: DatasetPaths, day: str) -> float:
    """The estimate the drift report of ``day`` made before its labels (NaN if none)."""
    summary = read_drift_summary(paths, day) or {}
    value = (summary.get("estimated") or {}).get("value")
    return float(value) if isinstance(value, int | float) else math.nan


def _performance_day(
    context: AssetExecutionContext,
    contract: Contract,
    paths: DatasetPaths,
    config: PerformanceConfig,
    client: Any,
    model: Champion,
    champion: Champion,
    monitor: ChampionMonitor,
    day: str,
    clock: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One due day: the day's metrics by the model that scored it against its own holdout
    (a later champion may have trained on the day), the champion's pooled verdict; the
    row written to the lake and the day's metadata."""
    import pandas as pd  # on use: loading the code location must not import pandas

    primary = PRIMARY_METRIC[contract.task]
    reference = holdout_reference(client, model.version, primary)
    if math.isnan(reference):
        context.log.warning(
            f"{contract.name} v{model.number}: no holdout_{primary} on its run or tags: "
            "the day's metrics are recorded without a floor"
        )
    frame, sources = window_frame(
        contract, paths, [day], model.number, model.score, with_label=True
    )
    row = realised_performance(
        contract, day, frame["label"].to_numpy(dtype="float64", na_value=math.nan),
        frame[PREDICTION].to_numpy(dtype="float64"), version=model.number,
        reference=reference, tolerance=config.tolerance, relative=config.relative_tolerance,
        min_labelled_rows=config.min_labelled_rows, threshold=config.threshold,
    )  # fmt: skip
    pooled = _pooled_realised(contract, paths, champion, monitor, day, clock)
    row |= {
        "daily_breached": bool(row["breached"]),
        "breached": bool(pooled.breached),
        "champion_version": champion.number,
        **{f"pooled_{k}": v for k, v in pooled.to_dict().items() if k != "breached"},
        "scored_from": sources.get(day, "scored"),
        "in_training_window": day in set(training_days(model.tags)),
        "data_clock": clock.isoformat(sep=" ") if clock else None,
        "labels_due_at": labels_due_at(contract, day).isoformat(sep=" "),
        "estimated_before_labels": _estimated_before(paths, day),
    }
    path = write_parquet_atomic(pd.DataFrame([row]), paths.partition_file(PERFORMANCE_TABLE, day))
    metadata: dict[str, Any] = {m: float(row[m]) for m in metric_names(contract.task)}
    metadata |= {
        "model_version": model.number,
        "rows": int(row["rows"]),
        "labelled_rows": int(row["labelled_rows"]),
        "reference": float(row["reference"]),
        "floor": float(row["floor"]),
        "breached": bool(row["breached"]),
        "pooled_value": float(row["pooled_value"]),
        "pooled_floor": float(row["pooled_floor"]),
        "pooled_rows": int(row["pooled_rows"]),
        "pooled_days": int(row["pooled_days"]),
        "primary_metric": primary,
        # What the drift report estimated for the same trailing days, before labels.
        f"estimated_{primary}": float(row["estimated_before_labels"]),
        "path": MetadataValue.path(str(path)),
    } | _canary_arms(contract, paths, day)
    context.log.info(_performance_description(row))
    return row, metadata


def _canary_arms(contract: Contract, paths: DatasetPaths, day: str) -> dict[str, Any]:
    """Each canary arm's realised performance on the day, when rows were served online
    (the arm_performance table's partition, and a metadata table); nothing otherwise."""
    from driftloop.serving import canary_log

    if day not in canary_log.online_days(paths):
        return {}
    table = canary_log.write_arm_performance(contract, paths, day)
    if table.empty:
        return {}
    return {"canary_arms": MetadataValue.json(table.to_dict(orient="records"))}


def performance_compute(contract: Contract, key: AssetKey) -> Callable[..., Iterator[Any]]:
    name = contract.name

    def performance(
        context: AssetExecutionContext,
        config: PerformanceConfig,
        lake: LakeResource,
        mlflow: MlflowResource,
    ) -> Iterator[Any]:

        paths = lake.paths(name)
        days = sorted(context.partition_keys)
        champion = resolve_champion(context, name, mlflow)
        if champion is None:
            yield from skip_outputs(context)
            return
        clock = data_clock(contract, paths)
        due = [d for d in days if labels_due(contract, d, clock)]
        for day in days:
            if day not in due:
                context.log.info(
                    f"{name} {day}: labels not due yet: due at "
                    f"{labels_due_at(contract, day).isoformat(sep=' ')} (end of day + label "
                    f"delay {contract.label_delay}); the lake's data clock is at "
                    f"{clock.isoformat(sep=' ') if clock else '(no raw data)'}: skipped"
                )
        if not due:
            yield from skip_outputs(context)
            return
        absent = [d for d in due if not paths.partition_file(FEATURES_TABLE, d).exists()]
        if absent:
            raise Failure(
                description=f"{name}: no features partition for {', '.join(absent)}; "
                f"materialize {name}/features and {name}/predictions first"
            )
        client = mlflow.client()
        models: dict[str, Champion] = {champion.number: champion}
        rows: dict[str, dict[str, Any]] = {}
        monitor = champion_monitor_for(contract, paths, champion, mlflow, None)
        for day in due:
            model = _model_that_scored(paths, day, champion, models, client, mlflow)
            row, metadata = _performance_day(
                context, contract, paths, config, client, model, champion, monitor, day, clock
            )
            rows[day] = row
            yield AssetMaterialization(asset_key=key, partition=day, metadata=metadata)

        yield from check_results(
            context,
            key,
            PERFORMANCE_CHECK,
            {
                day: (
                    not row["breached"],
                    _performance_description(row),
                    {
                        "value": float(row["pooled_value"]),
                        "floor": float(row["pooled_floor"]),
                        "reference": float(row["pooled_reference"]),
                        "pooled_rows": int(row["pooled_rows"]),
                        "daily_value": float(row["value"]),
                    },
                )
                for day, row in rows.items()
            },
            asset_output_yielded=False,
        )

    return performance
