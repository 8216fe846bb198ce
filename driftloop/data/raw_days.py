"""Raw days written from the staged pieces: assembled, checked, stored, and accounted for.

One core call per Dagster step: `ingest_batch` (the ingest run: the landed files of one
batch, then every day they touched) and `ingest_and_build` (the `raw_data` asset: whatever
waits in landing, then the days asked for; the other days the files touched stay staged
until asked for). Each returns a typed result the Dagster layer turns into metadata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.assembly import AssembledDay, assemble_days, load_manifests
from driftloop.data.contract import Contract
from driftloop.data.ingest import IngestReport, ingest_landing
from driftloop.data.lake import (
    blocked_marker,
    existing_partitions,
    write_parquet_atomic,
    write_text_atomic,
)
from driftloop.data.landing import reclaim_written_archives
from driftloop.data.limits import IngestLimits
from driftloop.data.raw_table import source_file_counts, to_arrow
from driftloop.data.unseen import unseen_categories, write_sidecar
from driftloop.data.validation import CheckOutcome, failed_blocking, validate_days
from driftloop.names import RAW_TABLE
from driftloop.paths import DatasetPaths

TRAILING_PARTITIONS = 7


@dataclass
class RawDay:
    """One written raw day: its rows, the checks' outcomes and where things went."""

    day: str
    assembled: AssembledDay
    outcomes: list[CheckOutcome]
    unseen: dict[str, dict[str, Any]]
    path: Path
    conflicts_file: Path | None = None

    @property
    def frame(self) -> pd.DataFrame:
        return self.assembled.frame

    @property
    def failing(self) -> list[str]:
        return [o.name for o in failed_blocking(self.outcomes)]

    @property
    def blocked(self) -> bool:
        return bool(self.failing)

    def accounting(self) -> dict[str, Any]:
        return {"day": self.day, **self.assembled.accounting(), "blocked": self.blocked}


@dataclass
class RawDaysResult:
    written: list[RawDay] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)  # no staged rows at all: nothing written

    @property
    def blocked(self) -> list[str]:
        return [d.day for d in self.written if d.blocked]

    def source_files(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for raw in self.written:
            for name, count in source_file_counts(raw.frame).items():
                totals[name] = totals.get(name, 0) + count
        return totals


@dataclass
class IngestRun:
    """Landed files ingested, and raw days rewritten: `days` those asked for (or, for a
    batch, those touched); `waiting` the other days the files touched, staged and not
    written (a run that asks for days writes only those)."""

    report: IngestReport
    days: RawDaysResult
    waiting: list[str] = field(default_factory=list)


class RowCounts:
    """Row counts of the raw partitions, read once from the lake (Parquet footers, on first
    use) and kept as days are written: the trailing counts of many days from one listing."""

    def __init__(self, paths: DatasetPaths) -> None:
        self.paths = paths
        self.counts: dict[str, int | None] = dict.fromkeys(
            existing_partitions(paths.table(RAW_TABLE))
        )

    def written(self, day: str, rows: int) -> None:
        self.counts[day] = rows

    def before(self, day: str, n: int = TRAILING_PARTITIONS) -> list[int]:
        import pyarrow.parquet as pq

        found: list[int] = []
        for earlier in sorted((d for d in self.counts if d < day), reverse=True):
            if self.counts[earlier] is None:
                try:
                    path = self.paths.partition_file(RAW_TABLE, earlier)
                    self.counts[earlier] = pq.ParquetFile(path).metadata.num_rows
                except FileNotFoundError:
                    continue
            found.append(int(self.counts[earlier] or 0))
            if len(found) == n:
                break
        return found[::-1]


def _write_conflicts(paths: DatasetPaths, assembled: AssembledDay) -> Path | None:
    """The day's conflicting duplicates in quarantine (replaced on every rebuild of the day)."""
    target = paths.quarantine / "conflicts" / f"date={assembled.day}.rows.parquet"
    reason = target.with_name(target.name + ".reason.txt")
    if assembled.conflicts.empty:
        target.unlink(missing_ok=True)
        reason.unlink(missing_ok=True)
        return None
    rows = assembled.conflicts
    write_parquet_atomic(rows.astype(object).where(rows.notna(), None), target)
    lines = [
        f"day: {assembled.day}",
        f"outcome: {len(rows)} row(s) quarantined in {target.name}, not stored",
        "reason: rule duplicate_ids: the same id with different values; to correct a file, "
        "land it again under the same name",
        "details:",
        *[f"  - {text}" for text in rows["_reason"].drop_duplicates().head(10)],
    ]
    write_text_atomic("\n".join(lines) + "\n", reason)
    return target


def _write_partition(
    contract: Contract, paths: DatasetPaths, raw: RawDay, failing: list[CheckOutcome], table: Any
) -> None:
    """Data file and BLOCKED marker, ordered so a reader never sees failing data unmarked.

    `table` holds the day's rows as Arrow (`to_arrow` of `raw.frame`)."""
    marker = blocked_marker(paths.table(RAW_TABLE), raw.day)
    if failing:
        body = {
            "dataset": contract.name,
            "partition": raw.day,
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
        write_text_atomic(json.dumps(body, indent=2, default=str) + "\n", marker)
    write_parquet_atomic(table, raw.path)
    if not failing:
        marker.unlink(missing_ok=True)
    write_sidecar(paths, raw.day, raw.unseen)


def _as_arrow(contract: Contract, present: dict[str, AssembledDay]) -> dict[str, Any]:
    """Each day's rows as Arrow, converted in one go and sliced per day."""
    import pandas as pd

    frames = [a.frame for a in present.values()]
    table = to_arrow(contract, pd.concat(frames, ignore_index=True))
    slices, offset = {}, 0
    for day, assembled in present.items():
        slices[day] = table.slice(offset, assembled.rows_stored)
        offset += assembled.rows_stored
    return slices


def build_raw_days(
    contract: Contract, paths: DatasetPaths, days: list[str], write_empty: bool = False
) -> RawDaysResult:
    """Assemble, check and write each day in order (each day's history has the days before).

    A day without any staged rows is written (empty) only with `write_empty`, as when a
    correction moved every row away; otherwise such days are listed in `empty` and
    nothing at all is written. The days are assembled, checked (`validate_days`) and
    converted to Arrow together; only the writes go day by day.
    """
    result = RawDaysResult()
    present = assemble_days(contract, paths, days, load_manifests(paths))
    result.empty = [d for d, a in present.items() if not a.rows_landed and not write_empty]
    if result.empty or not present:
        return result
    unseen = unseen_categories(contract, paths, {d: a.frame for d, a in present.items()})
    tables = _as_arrow(contract, present)
    counts = RowCounts(paths)
    trailing = {}
    for day, day_rows in present.items():
        trailing[day] = counts.before(day)
        counts.written(day, day_rows.rows_stored)
    checked = validate_days(contract, present, trailing, unseen)
    for day, day_rows in present.items():
        outcomes = checked[day]
        raw = RawDay(day, day_rows, outcomes, unseen[day], paths.partition_file(RAW_TABLE, day))
        raw.conflicts_file = _write_conflicts(paths, day_rows)
        _write_partition(contract, paths, raw, failed_blocking(outcomes), tables[day])
        result.written.append(raw)
    return result


def ingest_batch(
    contract: Contract,
    paths: DatasetPaths,
    names: list[str] | None = None,
    limits: IngestLimits | None = None,
) -> IngestRun:
    """Ingest the batch's landed files, and archived files written to after archiving
    (driftloop/data/landing.py), then rewrite every raw day they touched."""
    reclaimed = reclaim_written_archives(paths)
    if names is not None:
        names = [*names, *(n for n in reclaimed if n not in names)]
    report = ingest_landing(contract, paths, names, limits)
    report.reclaimed = reclaimed
    return IngestRun(report, build_raw_days(contract, paths, report.days, write_empty=True))


def ingest_and_build(
    contract: Contract,
    paths: DatasetPaths,
    days: list[str],
    limits: IngestLimits | None = None,
) -> IngestRun:
    """Ingest what waits in landing, then write the days asked for, and only those.

    The other days the landed files touched stay staged (`IngestRun.waiting`) until a run
    asks for them, or the ingest job of a later batch touches them. If one of the days asked
    for has no staged rows at all, none is written (`days.empty` says which): an empty day
    is almost always a missing delivery.
    """
    report = ingest_landing(contract, paths, None, limits)
    wanted = sorted(set(days))
    staged = {d for m in load_manifests(paths) for d in m["days"]}
    waiting = [d for d in report.days if d not in set(wanted)]
    empty = [d for d in wanted if d not in staged]
    if empty:
        return IngestRun(report, RawDaysResult(empty=empty), waiting)
    return IngestRun(report, build_raw_days(contract, paths, wanted, write_empty=True), waiting)
