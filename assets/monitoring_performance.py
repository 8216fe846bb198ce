"""`<dataset>/performance`: the champion's realised metric once labels are due, per day and
pooled over the trailing labelled days against the floor its holdout's bootstrap sets at
that row count (``driftloop.monitoring.performance``). A day whose labels are not due is
skipped with a log line saying when they will be; a range run materializes exactly the
due days. Check ``performance_floor`` warns (never blocks), one result per day."""

# No `from __future__ import annotations`: Dagster reads the context/config annotations.
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    Config,
    MetadataValue,
)
from pydantic import Field

from assets.monitoring_checks import champion_monitor_for, check_results, require_features
from assets.predictions import Champion, resolve_champion, skip_outputs
from driftloop.data.contract import Contract
from driftloop.monitoring.champion import ChampionMonitor
from driftloop.monitoring.performance_day import DaySettings, PerformanceDay, performance_day
from driftloop.monitoring.signals import (
    MIN_LABELLED_ROWS,
    MODEL_VERSION,
    data_clock,
    labels_due,
    labels_due_at,
)
from driftloop.names import PREDICTIONS_TABLE
from driftloop.paths import DatasetPaths
from driftloop.serving import canary_log
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
) -> PerformanceDay:
    """One due day (``driftloop.monitoring.performance_day``), logged."""
    settings = DaySettings(
        tolerance=config.tolerance,
        relative_tolerance=config.relative_tolerance,
        min_labelled_rows=config.min_labelled_rows,
        threshold=config.threshold,
    )
    result = performance_day(
        contract,
        paths,
        day,
        clock,
        client=client,
        model=model,
        champion=champion,
        monitor=monitor,
        settings=settings,
    )
    if not result.has_reference:
        context.log.warning(
            f"{contract.name} v{model.number}: no holdout_{result.row['primary_metric']} on "
            "its run or tags: the day's metrics are recorded without a floor"
        )
    context.log.info(result.description())
    return result


def _canary_arms(contract: Contract, paths: DatasetPaths, day: str) -> dict[str, Any]:
    """Each canary arm's realised performance on the day, when rows were served online
    (the arm_performance table's partition, and a metadata table); nothing otherwise."""
    if day not in canary_log.online_days(paths):
        return {}
    table = canary_log.write_arm_performance(contract, paths, day)
    if table.empty:
        return {}
    return {"canary_arms": MetadataValue.json(table.to_dict(orient="records"))}


def _log_not_due(
    context: AssetExecutionContext, contract: Contract, days: list[str], clock: Any
) -> None:
    for day in days:
        context.log.info(
            f"{contract.name} {day}: labels not due yet: due at "
            f"{labels_due_at(contract, day).isoformat(sep=' ')} (end of day + label "
            f"delay {contract.label_delay}); the lake's data clock is at "
            f"{clock.isoformat(sep=' ') if clock else '(no raw data)'}: skipped"
        )


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
        _log_not_due(context, contract, [d for d in days if d not in due], clock)
        if not due:
            yield from skip_outputs(context)
            return
        require_features(name, paths, due)
        client = mlflow.client()
        models: dict[str, Champion] = {champion.number: champion}
        results: dict[str, PerformanceDay] = {}
        monitor = champion_monitor_for(contract, paths, champion, mlflow, None)
        for day in due:
            model = _model_that_scored(paths, day, champion, models, client, mlflow)
            result = _performance_day(
                context, contract, paths, config, client, model, champion, monitor, day, clock
            )
            results[day] = result
            metadata = result.numbers(contract.task) | {
                "path": MetadataValue.path(str(result.path))
            }
            metadata |= _canary_arms(contract, paths, day)
            yield AssetMaterialization(asset_key=key, partition=day, metadata=metadata)
        verdicts = {
            day: (not r.row["breached"], r.description(), r.check_numbers())
            for day, r in results.items()
        }
        yield from check_results(
            context, key, PERFORMANCE_CHECK, verdicts, asset_output_yielded=False
        )

    return performance
