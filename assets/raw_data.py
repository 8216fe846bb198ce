"""`<dataset>/raw_data`: one raw Parquet file per day, assembled from the staged pieces and checked.

The ingest job (pipelines/ingest_job.py) records this asset's materializations for the days
a batch of landed files filled. Materializing the asset itself (`dg launch --assets
NAME/raw_data --partition-range A...B`) ingests whatever waits in landing too and writes
the days asked for, and only those: the other days the files touched stay staged, named
in the run's log and metadata, until a run asks for them (docs/cli.md).

Blocking in Dagster 1.13 (verified in tests/test_raw_data_asset.py): an asset check result
yielded from the asset body with passed=False, severity ERROR and a blocking spec makes
Dagster fail the step after the body finished (DagsterAssetCheckFailedError), so the
materialization and the check results are recorded and downstream steps of the same run
are skipped. Consumers in other runs see `BLOCKED.json` beside the partition.

The day's check: one `contract` check per day with every rule's result
(assets/raw_checks.py). Partitioned: the check spec carries the asset's partitions, so each
result is stored per day. `AssetCheckResult` takes its partition from the run, which a range
run (single-run backfill) does not have; there we yield the check's output once and one
`AssetCheckEvaluation` per day, with the day as its partition.
"""

# No `from __future__ import annotations`: Dagster reads the context/resource annotations.
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    BetaWarning,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    Output,
    PreviewWarning,
    asset,
)

from assets.cost import measured_step
from assets.partitions import daily_partitions, range_policy
from assets.raw_checks import (
    CONTRACT_CHECK,
    CONTRACT_CHECK_DESCRIPTION,
    accounting_table,
    contract_description,
    contract_metadata,
    day_metadata,
    evaluations,
    ingest_metadata,
    log_ingest,
    severity,
)
from driftloop.data.contract import Contract
from driftloop.data.raw_days import RawDaysResult, ingest_and_build
from driftloop.data.validation import failed_blocking
from resources.lake import LakeResource


def build(contract: Contract) -> Definitions:
    key = AssetKey([contract.name, "raw_data"])
    partitions = daily_partitions(contract)
    with warnings.catch_warnings():
        # partitions_def on a check spec is a preview feature in 1.13; it is what stores
        # one result per day instead of one per run.
        warnings.simplefilter("ignore", PreviewWarning)
        spec = AssetCheckSpec(
            CONTRACT_CHECK,
            asset=key,
            blocking=True,
            description=CONTRACT_CHECK_DESCRIPTION,
            partitions_def=partitions,
        )

    with warnings.catch_warnings():
        # backfill_policy is "beta" in 1.13 (assets/partitions.py: range_policy).
        warnings.simplefilter("ignore", BetaWarning)
        raw_data = asset(
            key=key,
            group_name=contract.name,
            partitions_def=partitions,
            backfill_policy=range_policy(),
            check_specs=[spec],
            description=(
                f"{contract.name}: landed rows cast to the contract, one Parquet file per local "
                "day under the duplicate rule, checked against the contract (BLOCKED.json marks "
                "failed days). Written by the ingest job for the days a batch fills."
            ),
            kinds={"parquet"},
        )(measured_step(contract.name, "raw_data")(_make_compute(contract, key)))
    return Definitions(assets=[raw_data])


def _metadata(result: RawDaysResult, paths_table: str, one_day: bool) -> dict[str, Any]:
    """The run's materialization: files, blocked days and, in a one-day run, its accounting.

    A range run gives every day's materialization the run's metadata as well as the day's
    own (accounting included), so a table with a row per day would be stored once per day:
    quadratic in the range's length. There the days' own metadata carries their accounting."""
    metadata: dict[str, Any] = {
        "source_files": MetadataValue.json(result.source_files()),
        "blocked_partitions": MetadataValue.json(result.blocked),
        "path": MetadataValue.path(paths_table),
    }
    if one_day:
        metadata["accounting"] = accounting_table(result)
        metadata["rows_by_partition"] = MetadataValue.json(
            {raw.day: raw.assembled.rows_stored for raw in result.written}
        )
    return metadata


def _make_compute(contract: Contract, key: AssetKey) -> Callable[..., Iterator[Any]]:
    """The asset body for one contract (a closure: one asset per dataset)."""

    def raw_data(context: AssetExecutionContext, lake: LakeResource) -> Iterator[Any]:
        paths = lake.paths(contract.name)
        run = ingest_and_build(contract, paths, list(context.partition_keys))
        log_ingest(context, run)
        result = run.days
        if result.empty:
            # Nothing is written: an empty day is almost always a missing delivery.
            raise Failure(
                description=f"no data landed for {', '.join(result.empty)}",
                metadata={
                    "empty_partitions": MetadataValue.json(result.empty),
                    "landing_zone": MetadataValue.path(str(paths.landing)),
                },
            )
        for raw in result.written:
            if raw.blocked:
                context.log.error(
                    f"{contract.name} raw {raw.day} BLOCKED by failed check(s) {raw.failing}: "
                    + " | ".join(o.description for o in failed_blocking(raw.outcomes))
                )
            if not context.has_partition_key:
                context.add_asset_metadata(day_metadata(raw), partition_key=raw.day)
        table = str(paths.table("raw"))
        metadata = {**_metadata(result, table, context.has_partition_key), **ingest_metadata(run)}
        if context.has_partition_key:
            metadata.update(day_metadata(result.written[0]))
        yield MaterializeResult(metadata=metadata)
        yield from _check_events(context, key, result)

    return raw_data


def _check_events(
    context: AssetExecutionContext, key: AssetKey, result: RawDaysResult
) -> Iterator[Any]:
    """The check result of a one-day run; a range run's per-day evaluations (module docstring)."""
    selected = AssetCheckKey(key, CONTRACT_CHECK) in context.selected_asset_check_keys
    if selected and context.has_partition_key:
        outcomes = result.written[0].outcomes
        yield AssetCheckResult(
            check_name=CONTRACT_CHECK,
            passed=all(o.passed for o in outcomes),
            severity=severity(outcomes),
            description=contract_description(outcomes),
            metadata=contract_metadata(outcomes),
        )
    elif selected:
        [output_name] = context.assets_def.check_specs_by_output_name
        yield Output(None, output_name=output_name)
        for raw in result.written:
            yield from evaluations(key, raw)
    # Dagster fails the step for a failed blocking check it was given; without the check
    # selected a blocked day would slip through, so stop the run here instead.
    blocked = [f"{raw.day}: {raw.failing}" for raw in result.written if raw.blocked]
    if blocked and not selected:
        raise Failure(
            description=f"blocking rules failed (check not selected, still enforced): {blocked}"
        )
