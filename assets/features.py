"""The `<dataset>/features` asset: daily partitions of model features, built in one query."""

# No `from __future__ import annotations`: Dagster inspects the context annotation at runtime.
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Definitions,
    IdentityPartitionMapping,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from assets.partitions import daily_partitions
from driftloop.contract import Contract, Task
from driftloop.features import FEATURES_TABLE, RAW_TABLE, build_features, lookback_days
from driftloop.lake import write_parquet_atomic
from resources.lake import LakeResource


def _null_fractions(frame: "pd.DataFrame", features: list[str]) -> MetadataValue:
    import pandas as pd

    fractions = frame[features].isna().mean() if len(frame) else pd.Series(0.0, index=features)
    records = [
        TableRecord({"feature": name, "null_fraction": round(float(fractions[name]), 4)})
        for name in features
    ]
    schema = TableSchema(
        columns=[
            TableColumn("feature", "string"),
            TableColumn("null_fraction", "float"),
        ]
    )
    return MetadataValue.table(records, schema=schema)


def build(contract: Contract) -> Definitions:
    name = contract.name
    lookback = lookback_days(contract)

    @asset(
        key=AssetKey([name, "features"]),
        group_name=name,
        partitions_def=daily_partitions(contract),
        deps=[AssetDep(AssetKey([name, "raw_data"]), partition_mapping=IdentityPartitionMapping())],
        backfill_policy=BackfillPolicy.single_run(),
        description=(
            f"Model features of {name}, one row per raw row: ids, event_time, partition_date, "
            f"the contract's features and label. Rolling features read the {lookback} raw "
            "partitions before each range directly (not as a Dagster dependency, so that "
            "partition mapping stays one to one); blocked lookback days are skipped, a "
            "blocked day of the range fails the run. A range is one run and one DuckDB query."
        ),
        kinds={"duckdb", "parquet"},
    )
    def features(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
        """Build the features of the run's partition range and write one file per day."""
        paths = lake.paths(name)
        days = sorted(context.partition_keys)
        absent = [d for d in days if not paths.partition_file(RAW_TABLE, d).exists()]
        if absent:
            raise ValueError(
                f"{name}: no raw partition for {', '.join(absent)} under "
                f"{paths.table(RAW_TABLE)}; materialize {name}/raw_data for these days first"
            )
        start, end = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
        frame = build_features(contract, paths, start, end)
        for skipped in frame.attrs.get("skipped_lookback_days", []):
            context.log.warning(f"{name}: lookback raw partition {skipped} is blocked: skipped")

        written = []
        # Row positions per day, and one day's rows copied at a time: a dict of every group
        # would hold a second copy of the whole range (GBs for 10M rows over 100 days).
        by_day = frame.groupby("partition_date", sort=True).indices if len(frame) else {}
        for day in days:
            rows = frame.iloc[by_day[day]] if day in by_day else frame.iloc[0:0]
            path = write_parquet_atomic(
                rows.reset_index(drop=True), paths.partition_file(FEATURES_TABLE, day)
            )
            written.append((day, len(rows), path))

        labels = frame["label"]
        label_stat = "label_rate" if contract.task == Task.binary else "label_mean"
        metadata = {
            "rows": MetadataValue.int(len(frame)),
            "days": MetadataValue.int(len(days)),
            "labelled_rows": MetadataValue.int(int(labels.notna().sum())),
            label_stat: MetadataValue.float(float(labels.mean()) if labels.notna().any() else 0.0),
            "null_fraction": _null_fractions(frame, contract.features),
            "sql": MetadataValue.md(f"```sql\n{frame.attrs['sql']}\n```"),
            "lookback_days": MetadataValue.int(lookback),
            "path": MetadataValue.path(
                str(written[0][2]) if len(written) == 1 else str(paths.table(FEATURES_TABLE))
            ),
        }
        if len(written) > 1:
            metadata["rows_per_day"] = MetadataValue.json({d: n for d, n, _ in written})
        context.log.info(f"{name}: wrote {len(frame)} feature rows for {days[0]}..{days[-1]}")
        return MaterializeResult(metadata=metadata)

    return Definitions(assets=[features])
