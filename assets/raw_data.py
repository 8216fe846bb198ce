"""`<dataset>/raw_data`: ingest the landing zone, then write and check one raw file per day.

Blocking in Dagster 1.13 (verified in tests/test_raw_data_asset.py): an asset check result
yielded from the asset body with passed=False, severity ERROR and a blocking spec makes
Dagster fail the step after the body finished (DagsterAssetCheckFailedError), so the
materialization and the check results are recorded and downstream steps of the same run
are skipped. Consumers in other runs see `BLOCKED.json` beside the partition.

Partitioned checks: the check specs carry the asset's partitions, so each result is stored
per day. `AssetCheckResult` takes its partition from the run, which a range run (single-run
backfill) does not have; there we yield each check's output once and one
`AssetCheckEvaluation` per day and check, with the day as its partition.
"""

# No `from __future__ import annotations`: Dagster reads the context/resource annotations.
import json
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
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
    AssetRecordsFilter,
    BetaWarning,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    PreviewWarning,
    asset,
)

from assets.partitions import daily_partitions, range_policy
from driftloop.data.assembly import assemble_partition
from driftloop.data.contract import Contract
from driftloop.data.ingest import IngestReport, ingest_landing
from driftloop.data.lake import (
    blocked_marker,
    existing_partitions,
    write_parquet_atomic,
    write_text_atomic,
)
from driftloop.data.raw_table import source_file_counts, to_arrow
from driftloop.data.validation import CHECKS, CheckOutcome, failed_blocking, validate_partition
from driftloop.names import RAW_TABLE
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource

TRAILING_PARTITIONS = 7
PREVIEW_ROWS = 10


def trailing_row_counts(paths: DatasetPaths, day: str, n: int = TRAILING_PARTITIONS) -> list[int]:
    """Row counts of the last n existing raw partitions before `day`, from Parquet footers."""
    import pyarrow.parquet as pq

    earlier = [d for d in existing_partitions(paths.table(RAW_TABLE)) if d < day][-n:]
    counts = []
    for d in earlier:
        try:
            counts.append(pq.ParquetFile(paths.partition_file(RAW_TABLE, d)).metadata.num_rows)
        except FileNotFoundError:
            continue
    return counts


def _markdown_table(frame: "pd.DataFrame") -> str:
    import pandas as pd

    def cell(value: Any) -> str:
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows])


def _check_metadata(outcome: CheckOutcome) -> dict[str, Any]:
    import pandas as pd

    metadata: dict[str, Any] = {}
    for key, value in outcome.metadata.items():
        if key == "table" and isinstance(value, list):
            metadata[key] = MetadataValue.md(_markdown_table(pd.DataFrame(value)) if value else "")
        elif isinstance(value, list | dict):
            metadata[key] = MetadataValue.json(value)
        else:
            metadata[key] = value
    return metadata


def _write_partition(
    contract: Contract, paths: DatasetPaths, day: str, frame: "pd.DataFrame", outcomes: list
) -> dict[str, Any]:
    """Data file and BLOCKED marker, ordered so a reader never sees failing data unmarked."""
    data_file = paths.partition_file(RAW_TABLE, day)
    marker = blocked_marker(paths.table(RAW_TABLE), day)
    failing = failed_blocking(outcomes)
    if failing:
        marker_body = {
            "dataset": contract.name,
            "partition": day,
            "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "failed_checks": [
                {
                    "name": o.name,
                    "description": o.description,
                    "failing_rows": o.metadata.get("failing_rows"),
                    "source_files": o.metadata.get("source_files"),
                }
                for o in failing
            ],
        }
        write_text_atomic(json.dumps(marker_body, indent=2, default=str) + "\n", marker)
        write_parquet_atomic(to_arrow(contract, frame), data_file)
    else:
        write_parquet_atomic(to_arrow(contract, frame), data_file)
        marker.unlink(missing_ok=True)
    return {"path": data_file, "blocked": bool(failing), "failing": [o.name for o in failing]}


def _log_ingest(context: AssetExecutionContext, report: IngestReport) -> None:
    context.log.info(f"landing zone: {report.summary()}")
    for name, reason in report.quarantined.items():
        context.log.warning(f"quarantined landed file {name}: {reason}")
    for name, rows in report.quarantined_rows.items():
        context.log.warning(f"quarantined {rows} row(s) of {name}; the rest was ingested")


def _target_materialization(context: AssetExecutionContext, key: AssetKey, day: str):
    """The materialization of `day` just recorded, so each evaluation links to it."""
    try:
        from dagster._core.definitions.asset_checks.asset_check_evaluation import (
            AssetCheckEvaluationTargetMaterializationData,
        )
    except ImportError:  # private in 1.13; the link is a nicety, the result stands without it
        return None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[day]), limit=1
    ).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=records[0].event_log_entry.run_id,
        storage_id=records[0].storage_id,
        timestamp=records[0].timestamp,
    )


def build(contract: Contract) -> Definitions:
    key = AssetKey([contract.name, "raw_data"])
    partitions = daily_partitions(contract)
    with warnings.catch_warnings():
        # partitions_def on a check spec is a preview feature in 1.13; it is what stores
        # one result per day instead of one per run.
        warnings.simplefilter("ignore", PreviewWarning)
        specs = [
            AssetCheckSpec(
                name,
                asset=key,
                blocking=blocking,
                description=text,
                partitions_def=partitions,
            )
            for name, (blocking, text) in CHECKS.items()
        ]

    with warnings.catch_warnings():
        # backfill_policy is "beta" in 1.13 (assets/partitions.py: range_policy).
        warnings.simplefilter("ignore", BetaWarning)
        raw_data = asset(
            key=key,
            group_name=contract.name,
            partitions_def=partitions,
            backfill_policy=range_policy(),
            check_specs=specs,
            description=(
                f"{contract.name}: landed files ingested and cast to the contract, one Parquet "
                "file per local day, checked against the contract (BLOCKED.json marks failed "
                "days)."
            ),
            kinds={"parquet"},
        )(_make_compute(contract, key))
    return Definitions(assets=[raw_data])


def _make_compute(contract: Contract, key: AssetKey) -> Callable[..., Iterator[Any]]:
    """The asset body for one contract (a closure: one asset per dataset)."""

    def raw_data(context: AssetExecutionContext, lake: LakeResource) -> Iterator[Any]:
        paths = lake.paths(contract.name)
        report = ingest_landing(contract, paths)
        _log_ingest(context, report)

        days = list(context.partition_keys)
        frames = {day: assemble_partition(contract, paths, day) for day in days}
        empty = [day for day, frame in frames.items() if frame.empty]
        if empty:
            # Nothing is written: an empty day is almost always a missing delivery.
            raise Failure(
                description=f"no data landed for {', '.join(empty)}",
                metadata={
                    "empty_partitions": MetadataValue.json(empty),
                    "landing_zone": MetadataValue.path(str(paths.landing)),
                    "ingest": report.summary(),
                    "quarantined_files": MetadataValue.json(report.quarantined),
                },
            )

        written: dict[str, dict[str, Any]] = {}
        outcomes_by_day: dict[str, list[CheckOutcome]] = {}
        for day in days:  # in order, so each day's history includes the days before it
            frame = frames[day]
            outcomes = validate_partition(contract, frame, day, trailing_row_counts(paths, day))
            outcomes_by_day[day] = outcomes
            written[day] = _write_partition(contract, paths, day, frame, outcomes)
            if written[day]["blocked"]:
                context.log.error(
                    f"{contract.name} raw {day} BLOCKED by failed check(s) "
                    f"{written[day]['failing']}: "
                    + " | ".join(o.description for o in failed_blocking(outcomes))
                )

        sources: dict[str, int] = {}
        for frame in frames.values():
            for name, count in source_file_counts(frame).items():
                sources[name] = sources.get(name, 0) + count
        metadata: dict[str, Any] = {
            "source_files": MetadataValue.json(sources),
            "ingested_files": MetadataValue.json(report.ingested),
            "quarantined_files": MetadataValue.json(report.quarantined),
            "quarantined_rows": MetadataValue.json(report.quarantined_rows),
            "blocked_partitions": MetadataValue.json([d for d in days if written[d]["blocked"]]),
            "days_touched_by_ingest": MetadataValue.json(report.days),
            "ingest": report.summary(),
        }
        if len(days) == 1:
            day = days[0]
            metadata["dagster/row_count"] = len(frames[day])
            metadata["path"] = MetadataValue.path(str(written[day]["path"]))
            metadata["preview"] = MetadataValue.md(_markdown_table(frames[day].head(PREVIEW_ROWS)))
        else:
            # One materialization result covers every day of a range run: per-day facts
            # go in a table instead of a misleading total row count.
            metadata["rows_by_partition"] = MetadataValue.json({d: len(frames[d]) for d in days})
            metadata["path"] = MetadataValue.path(str(paths.table(RAW_TABLE)))
            metadata["preview"] = MetadataValue.md(
                _markdown_table(frames[days[0]].head(PREVIEW_ROWS))
            )
        yield MaterializeResult(metadata=metadata)

        selected = {
            name for name in CHECKS if AssetCheckKey(key, name) in context.selected_asset_check_keys
        }
        if context.has_partition_key:
            for outcome in outcomes_by_day[days[0]]:
                if outcome.name in selected:
                    yield AssetCheckResult(
                        check_name=outcome.name,
                        passed=outcome.passed,
                        severity=_severity(outcome),
                        description=outcome.description,
                        metadata=_check_metadata(outcome),
                    )
        else:
            # Range run: the check outputs once, then one evaluation per day and check.
            for output_name, spec in context.assets_def.check_specs_by_output_name.items():
                if spec.name in selected:
                    yield Output(None, output_name=output_name)
            for day in days:
                target = _target_materialization(context, key, day)
                for outcome in outcomes_by_day[day]:
                    if outcome.name in selected:
                        yield AssetCheckEvaluation(
                            asset_key=key,
                            check_name=outcome.name,
                            passed=outcome.passed,
                            metadata=_check_metadata(outcome),
                            target_materialization_data=target,
                            severity=_severity(outcome),
                            description=f"{day}: {outcome.description}",
                            blocking=outcome.blocking,
                            partition=day,
                        )

        # Dagster fails the step for failed blocking checks it was given; a failure of a
        # check that was not selected would slip through, so stop the run here instead.
        unreported = sorted(
            {
                f"{day}: {o.name}"
                for day, outcomes in outcomes_by_day.items()
                for o in failed_blocking(outcomes)
                if o.name not in selected
            }
        )
        if unreported:
            raise Failure(
                description=f"blocking checks failed (not selected, still enforced): {unreported}"
            )

    return raw_data


def _severity(outcome: CheckOutcome) -> AssetCheckSeverity:
    return AssetCheckSeverity.ERROR if outcome.blocking else AssetCheckSeverity.WARN
