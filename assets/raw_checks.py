"""Raw days as Dagster metadata and check evaluations, shared by the raw_data asset and the
ingest job (which records raw_data materializations for the days its files filled).

One asset check, `contract`, per day carries every rule of the contract
(driftloop/data/check_outcome.py: CHECKS): each rule's result in its metadata, the failed
rules in its description. It fails with ERROR severity when a blocking rule failed (Dagster
then fails the step: per-day blocking), with WARN when only warning rules failed (row count,
unseen categories). One evaluation a day rather than one per rule: each evaluation is a
few transactions in Dagster's event storage, the bulk of a long range's time
(docs/performance.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetMaterialization,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.lake import contiguous_ranges
from driftloop.data.raw_days import IngestRun, RawDay, RawDaysResult
from driftloop.data.validation import CHECKS, CheckOutcome

PREVIEW_ROWS = 10
CONTRACT_CHECK = "contract"
CONTRACT_CHECK_DESCRIPTION = (
    "Every rule of the contract on the day's rows. Blocking rules (ERROR, the day is blocked): "
    + ", ".join(n for n, (blocking, _) in CHECKS.items() if blocking)
    + ". Warnings (WARN): "
    + ", ".join(n for n, (blocking, _) in CHECKS.items() if not blocking)
    + "."
)
ACCOUNTING_COLUMNS = {
    "day": "string",
    "rows_landed": "int",
    "rows_stored": "int",
    "rows_quarantined": "int",
    "exact_duplicates_dropped": "int",
    "balanced": "bool",
    "blocked": "bool",
}


def markdown_table(frame: pd.DataFrame) -> str:
    import pandas as pd

    def cell(value: Any) -> str:
        return "" if pd.isna(value) else str(value).replace("|", "\\|")

    header = "| " + " | ".join(frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows])


def check_metadata(outcome: CheckOutcome) -> dict[str, Any]:
    import pandas as pd

    metadata: dict[str, Any] = {}
    for key, value in outcome.metadata.items():
        if key == "table" and isinstance(value, list):
            metadata[key] = MetadataValue.md(markdown_table(pd.DataFrame(value)) if value else "")
        elif isinstance(value, list | dict):
            metadata[key] = MetadataValue.json(value)
        else:
            metadata[key] = value
    return metadata


def severity(outcomes: list[CheckOutcome]) -> AssetCheckSeverity:
    """ERROR when a blocking rule failed (Dagster blocks on ERROR only), else WARN."""
    failed_blocking = any(o.blocking and not o.passed for o in outcomes)
    return AssetCheckSeverity.ERROR if failed_blocking else AssetCheckSeverity.WARN


def contract_description(outcomes: list[CheckOutcome]) -> str:
    failed = [o for o in outcomes if not o.passed]
    if not failed:
        return f"all {len(outcomes)} rules passed"
    return " | ".join(f"{o.name}: {o.description}" for o in failed)


def contract_metadata(outcomes: list[CheckOutcome]) -> dict[str, Any]:
    """Every rule's result as a table; the failed rules' own metadata under `rule/key`."""
    rows = [
        f"| {o.name} | {'yes' if o.passed else 'NO'} | {'yes' if o.blocking else 'no'} | "
        + o.description.replace("|", "\\|").replace("\n", " ")
        + " |"
        for o in outcomes
    ]
    table = "\n".join(["| rule | passed | blocking | result |", "| --- | --- | --- | --- |", *rows])
    metadata: dict[str, Any] = {
        "rules": MetadataValue.md(table),
        "failed_rules": MetadataValue.json([o.name for o in outcomes if not o.passed]),
    }
    for o in outcomes:
        if not o.passed:
            metadata.update({f"{o.name}/{k}": v for k, v in check_metadata(o).items()})
    return metadata


def accounting_table(result: RawDaysResult) -> MetadataValue:
    """Rows landed = stored + quarantined + exact duplicates dropped, per day."""
    records = []
    for raw in result.written:
        row = raw.accounting()
        records.append(TableRecord({k: row[k] for k in ACCOUNTING_COLUMNS}))
    schema = TableSchema(columns=[TableColumn(k, t) for k, t in ACCOUNTING_COLUMNS.items()])
    return MetadataValue.table(records, schema=schema)


def day_metadata(raw: RawDay) -> dict[str, Any]:
    """One day's materialization metadata: its rows, accounting, unseen categories, path."""
    accounting = raw.assembled.accounting()
    metadata: dict[str, Any] = {
        "dagster/row_count": raw.assembled.rows_stored,
        **{k: v for k, v in accounting.items() if k != "balanced"},
        "accounting_balanced": accounting["balanced"],
        "files": MetadataValue.json(raw.assembled.files),
        "unseen_categories": MetadataValue.json(
            {c: u["unseen_values"] for c, u in raw.unseen.items()}
        ),
        "blocked_by": MetadataValue.json(raw.failing),
        "path": MetadataValue.path(str(raw.path)),
        "preview": MetadataValue.md(markdown_table(raw.frame.head(PREVIEW_ROWS))),
    }
    if raw.conflicts_file is not None:
        metadata["conflicts_file"] = MetadataValue.path(str(raw.conflicts_file))
    return metadata


def evaluations(key: AssetKey, raw: RawDay) -> list[AssetCheckEvaluation]:
    """The day's `contract` evaluation, stored against that day's partition.

    Dagster 1.13 has no public way to link an evaluation to its partition's materialization,
    so Dagster does not count these as the partition's current check status; the day's own
    blocking is read from the lake (`BLOCKED.json`, assets/features.py) instead."""
    return [
        AssetCheckEvaluation(
            asset_key=key,
            check_name=CONTRACT_CHECK,
            passed=all(o.passed for o in raw.outcomes),
            metadata=contract_metadata(raw.outcomes),
            severity=severity(raw.outcomes),
            description=f"{raw.day}: {contract_description(raw.outcomes)}",
            blocking=True,
            partition=raw.day,
        )
    ]


def log_ingest(context: Any, run: IngestRun) -> None:
    """What the landing zone gave: files ingested, quarantined, corrected."""
    report = run.report
    context.log.info(f"landing zone: {report.summary()}")
    for name, reason in report.quarantined.items():
        context.log.warning(f"quarantined landed file {name}: {reason}")
    for name, rows in report.quarantined_rows.items():
        context.log.warning(f"quarantined {rows} row(s) of {name}; the rest was ingested")
    for name, digest in report.corrected.items():
        context.log.info(f"{name} landed again with new content: replaced the rows of {digest}")
    if run.waiting:
        spans = waiting_spans(run.waiting)
        context.log.warning(
            f"{len(run.waiting)} other day(s) of the landed files staged, not written (the run "
            f"asked for its own days only): {', '.join(spans[:10])}; write them with "
            f"--partition-range {run.waiting[0]}...{run.waiting[-1]}"
        )


def record_days(context: Any, key: AssetKey, result: RawDaysResult) -> list:
    """A raw_data materialization per written day, logged; its check evaluations, returned
    for the caller to log (an op) or yield (an asset body, where log_event refuses them)."""
    out = []
    for raw in result.written:
        context.log_event(
            AssetMaterialization(asset_key=key, partition=raw.day, metadata=day_metadata(raw))
        )
        out.extend(evaluations(key, raw))
    return out


def waiting_spans(days: list[str]) -> list[str]:
    """Days staged and not written, as spans of consecutive days ('A...B' or 'A')."""
    return [a if a == b else f"{a}...{b}" for a, b in contiguous_ranges(days)]


def ingest_metadata(run: IngestRun) -> dict[str, Any]:
    """What the landing zone gave, for a run's materialization."""
    report = run.report
    return {
        "ingested_files": MetadataValue.json(report.ingested),
        "quarantined_files": MetadataValue.json(report.quarantined),
        "quarantined_rows": MetadataValue.json(report.quarantined_rows),
        "corrected_files": MetadataValue.json(report.corrected),
        "days_staged_not_written": MetadataValue.json(waiting_spans(run.waiting)),
        "ingest": report.summary(),
    }
