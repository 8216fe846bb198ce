"""The `<dataset>/features` asset: daily partitions of model features, built with DuckDB."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.
import warnings
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    BetaWarning,
    Definitions,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    TimeWindowPartitionMapping,
    asset,
)

from assets.automation import keep_current
from assets.cost import measured_step
from assets.partitions import daily_partitions, range_policy
from driftloop.data.contract import Contract, Task
from driftloop.data.lake import contiguous_ranges, is_blocked
from driftloop.features.definition import lookback_days
from driftloop.features.writer import WrittenFeatures, write_features
from driftloop.names import FEATURES_TABLE, RAW_TABLE
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource


def _null_fractions(written: WrittenFeatures, features: list[str]) -> MetadataValue:
    records = [
        TableRecord({"feature": name, "null_fraction": round(written.null_fraction(name), 4)})
        for name in features
    ]
    schema = TableSchema(
        columns=[
            TableColumn("feature", "string"),
            TableColumn("null_fraction", "float"),
        ]
    )
    return MetadataValue.table(records, schema=schema)


def _metadata(
    contract: Contract, paths: DatasetPaths, days: list[str], written: WrittenFeatures
) -> dict[str, MetadataValue]:
    """Rows, labels, null fractions and where the files are; the SQL for a single day."""
    label_stat = "label_rate" if contract.task == Task.binary else "label_mean"
    metadata = {
        "rows": MetadataValue.int(written.rows),
        "days": MetadataValue.int(len(days)),
        "labelled_rows": MetadataValue.int(written.labelled_rows),
        label_stat: MetadataValue.float(written.label_mean or 0.0),
        "null_fraction": _null_fractions(written, contract.features),
        "lookback_days": MetadataValue.int(lookback_days(contract)),
        "path": MetadataValue.path(
            str(written.files[days[0]]) if len(days) == 1 else str(paths.table(FEATURES_TABLE))
        ),
    }
    if len(days) == 1:
        metadata["sql"] = MetadataValue.md(f"```sql\n{written.sql}\n```")
    else:
        # Dagster copies a range run's metadata onto every partition's materialization
        # (three rows in the event log each): the query, most of the metadata's size, stays
        # with single-day runs, whose query is the same but for its files and days.
        metadata["rows_per_day"] = MetadataValue.json(written.rows_per_day)
        metadata["queries"] = MetadataValue.int(len(written.chunks))
    return metadata


def _blocked_days(context: AssetExecutionContext, paths: DatasetPaths, days: list[str]) -> list:
    """The run's days whose raw partition failed its blocking checks, logged."""
    blocked = [d for d in days if is_blocked(paths.table(RAW_TABLE), d)]
    if blocked:
        context.log.error(
            f"{paths.dataset}: raw day(s) {', '.join(blocked)} blocked by failed checks: no "
            "features for them; the other days of the run are built, and their downstream "
            "follows in the automation's next run"
        )
    return blocked


def _day_materializations(
    key: AssetKey, days: list[str], written: WrittenFeatures
) -> Iterator[AssetMaterialization]:
    for day in days:
        metadata = {
            "rows": MetadataValue.int(written.rows_per_day.get(day, 0)),
            "path": MetadataValue.path(str(written.files[day])),
        }
        yield AssetMaterialization(asset_key=key, partition=day, metadata=metadata)


def window_mapping(lookback: int) -> TimeWindowPartitionMapping:
    """A day's features read the raw days its rolling windows reach: a rebuilt raw day makes
    the features of every later day whose windows read it stale (assets/automation.py)."""
    with warnings.catch_warnings():
        # Beta in 1.13; without it the first days' windows, which reach before the
        # partitions' start, would name partitions that do not exist.
        warnings.simplefilter("ignore", BetaWarning)
        return TimeWindowPartitionMapping(
            start_offset=-lookback, end_offset=0, allow_nonexistent_upstream_partitions=True
        )


def build(contract: Contract) -> Definitions:
    name = contract.name
    lookback = lookback_days(contract)
    reach = window_mapping(lookback)

    @asset(
        key=AssetKey([name, "features"]),
        group_name=name,
        partitions_def=daily_partitions(contract),
        deps=[AssetDep(AssetKey([name, "raw_data"]), partition_mapping=reach)],
        backfill_policy=range_policy(),
        automation_condition=keep_current(),
        output_required=False,  # a run whose days are all blocked materializes nothing
        description=(
            f"Model features of {name}, one row per raw row: ids, event_time, partition_date, "
            f"the contract's features and label. Rolling features read the {lookback} raw "
            "partitions before each day (its dependency); blocked lookback days are "
            "skipped, a blocked day of the range gets no features (its downstream stops, the "
            "other days go on). A range is one run: one DuckDB query per chunk of about a "
            "million raw rows."
        ),
        kinds={"duckdb", "parquet"},
    )
    @measured_step(name, "features")
    def features(context: AssetExecutionContext, lake: LakeResource) -> Iterator[Any]:
        """Build the features of the run's partition range and write one file per day."""
        paths = lake.paths(name)
        days = sorted(context.partition_keys)
        blocked = _blocked_days(context, paths, days)
        days = [d for d in days if d not in blocked]
        absent = [d for d in days if not paths.partition_file(RAW_TABLE, d).exists()]
        if absent:
            raise ValueError(
                f"{name}: no raw partition for {', '.join(absent)} under "
                f"{paths.table(RAW_TABLE)}; materialize {name}/raw_data for these days first"
            )

        def progress(chunk: list[str], rows: int) -> None:
            context.log.info(f"{name}: wrote {rows} feature rows for {chunk[0]}..{chunk[-1]}")

        if not days:
            return  # nothing materialized: the run's downstream steps are skipped
        if not blocked:
            written = write_features(contract, paths, days, on_chunk=progress)
            for skipped in written.skipped_lookback_days:
                context.log.warning(f"{name}: lookback raw partition {skipped} is blocked: skipped")
            yield MaterializeResult(metadata=_metadata(contract, paths, days, written))
            return
        # A blocked day in the run: each block of other days is built and each day gets a
        # materialization of its own; no output is yielded, so no step of this run builds on
        # the blocked day's old features.
        for first, last in contiguous_ranges(days):
            block = [d for d in days if first <= d <= last]
            written = write_features(contract, paths, block, on_chunk=progress)
            yield from _day_materializations(context.asset_key, block, written)

    return Definitions(assets=[features])
