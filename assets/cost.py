"""Every asset step's cost as its metadata: `measured_step`, under each asset's `@asset`.

The wrapper measures the step's body (`driftloop.cost.measure`) and adds
``cost_cpu_seconds``, ``cost_wall_seconds``, ``cost_peak_memory_mb`` and ``cost_rows`` to
each materialization it makes; the rows are what the step reported (``total_rows``,
``dagster/row_count`` or ``rows``). A step that made an MLflow run (``mlflow_run_id`` in
its metadata, the model asset) logs the same figures to that run, and every step's cost
is appended to the data root's cost log for the status CLI.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetMaterialization,
    MaterializeResult,
    Output,
)

from driftloop import cost
from driftloop.paths import data_root


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in (metadata or {}).items()}


def _finish(context: Any, dataset: str, step: str, meter: cost.CostMeter, metadata: dict) -> dict:
    """The cost so far, recorded in the cost log (and MLflow); returns the metadata to add."""
    plain = _plain(metadata)
    meter.rows = cost.rows_in(plain)
    spent = meter.now()
    lake = getattr(context.resources, "lake", None)
    root = lake.root() if lake is not None else data_root()
    partitions = None
    if context.has_partition_key_range:
        keys = context.partition_key_range
        partitions = f"{keys.start}..{keys.end}"
    cost.record(
        root,
        dataset,
        step,
        spent,
        run_id=context.run_id,
        partitions=partitions,
        model_version=plain.get("model_version"),
        mlflow_run_id=plain.get("mlflow_run_id"),
    )
    mlflow = getattr(context.resources, "mlflow", None)
    if plain.get("mlflow_run_id") and mlflow is not None:
        numbers = {k: float(v) for k, v in spent.metadata().items() if not isinstance(v, str)}
        client = mlflow.client()
        for key, value in numbers.items():
            client.log_metric(str(plain["mlflow_run_id"]), key, value)
    return spent.metadata()


def _stamped(item: Any, context: Any, dataset: str, step: str, meter: cost.CostMeter) -> Any:
    """A materialization with the step's cost added to its metadata; anything else as is."""
    if isinstance(item, MaterializeResult):
        extra = _finish(context, dataset, step, meter, dict(item.metadata or {}))
        return MaterializeResult(
            asset_key=item.asset_key,
            metadata={**(item.metadata or {}), **extra},
            check_results=item.check_results,
            data_version=item.data_version,
            tags=item.tags,
            value=item.value,
        )
    if isinstance(item, Output):
        extra = _finish(context, dataset, step, meter, dict(item.metadata or {}))
        return Output(
            item.value,
            output_name=item.output_name,
            metadata={**(item.metadata or {}), **extra},
            data_version=item.data_version,
            tags=item.tags,
        )
    if isinstance(item, AssetMaterialization):
        extra = _finish(context, dataset, step, meter, dict(item.metadata or {}))
        return AssetMaterialization(
            asset_key=item.asset_key,
            description=item.description,
            metadata={**(item.metadata or {}), **extra},
            partition=item.partition,
            tags=item.tags,
        )
    return item


def _measured(original: Callable[..., Any], dataset: str, step: str) -> Callable[..., Any]:
    """`original` with its cost measured; same signature, so Dagster injects the same
    context, config and resources."""
    if inspect.isgeneratorfunction(original):

        @functools.wraps(original)
        def measured_steps(*args: Any, **kwargs: Any) -> Iterator[Any]:
            with cost.measure() as meter:
                for item in original(*args, **kwargs):
                    yield _stamped(item, args[0], dataset, step, meter)

        return measured_steps

    @functools.wraps(original)
    def measured(*args: Any, **kwargs: Any) -> Any:
        with cost.measure() as meter:
            return _stamped(original(*args, **kwargs), args[0], dataset, step, meter)

    return measured


def measured_step(dataset: str, step: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for an asset's body, under `@asset`: the step's cost joins its metadata.

    The wrapper keeps the body's signature (`functools.wraps`), so Dagster sees the same
    context, config and resource parameters."""
    return lambda body: _measured(body, dataset, step)
