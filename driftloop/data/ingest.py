"""Ingestion from the landing zone: hash, read, cast, split bad rows out, stage per day, archive.

Every landed file ends in exactly one of three places, and nothing is ever lost:

- `archive/<hash>__<name>` after its good rows were staged as
  `lake/<dataset>/staged/date=D/<file key>.parquet` (one piece per local day it fills; the
  key comes from the landed file's name) beside a manifest `staged/_files/<file key>.json`
  that counts its rows per day;
- `quarantine/<stem>.<hash><suffix>` (moved whole) when it cannot be used at all, beside a
  `.reason.txt` a person can read (bounded in size);
- deleted from landing when it repeats content already ingested (a re-landing).

Rows that break a row-level rule of the contract go to `quarantine/<stem>.<hash>.rows.parquet`
(original values plus `_reason`) while the rest of the file is ingested, unless the bad
share exceeds `contract.max_bad_row_fraction`, in which case the whole file is quarantined.

Corrections: a file landed again under the same name with other content replaces that
file's rows, in every day the old or the new version fills (the old pieces are removed,
the new ones written). A correction that is itself quarantined leaves the old rows as
they were. Files over the size or width limits (`IngestLimits`) are quarantined unread.

Safe to run in two processes at once: outputs are named by file name and content hash,
every write is a temp file plus rename, and a file another process already moved away is
skipped (FileNotFoundError).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.assembly import MANIFESTS, assemble_partition, staged_pieces
from driftloop.data.contract import Contract
from driftloop.data.lake import contiguous_ranges, write_parquet_atomic, write_text_atomic
from driftloop.data.landing import mark_archived, same_file_state
from driftloop.data.limits import IngestLimits, check_limits, file_digest
from driftloop.data.raw_table import REASON, SOURCE_FILE, conform, raw_schema, to_arrow
from driftloop.data.reading import (
    CSV_SUFFIXES,
    MAX_DETAILS,
    MAX_REASON_CHARS,
    PARQUET_SUFFIXES,
    Reject,
    bounded,
    read_landed,
)
from driftloop.data.rules import cast_and_check
from driftloop.paths import DatasetPaths

# Names other modules import from here.
__all__ = [
    "REASON",
    "SOURCE_FILE",
    "IngestLimits",
    "IngestReport",
    "archived_digests",
    "assemble_partition",
    "conform",
    "file_digest",
    "file_key",
    "ingest_landing",
    "landing_files",
    "raw_schema",
    "staged_pieces",
    "to_arrow",
]


@dataclass
class IngestReport:
    """What one pass over the landing zone did (file names are the landed names)."""

    ingested: list[str] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    quarantined_rows: dict[str, int] = field(default_factory=dict)
    rows_ingested: dict[str, int] = field(default_factory=dict)
    rows_landed: dict[str, int] = field(default_factory=dict)
    corrected: dict[str, str] = field(default_factory=dict)  # name -> content hash replaced
    reason_files: list[str] = field(default_factory=list)
    # Written to while read: left in landing, ingested again as a correction.
    changed_while_read: list[str] = field(default_factory=list)
    # Written to after archiving: moved back to landing and ingested again, as a correction.
    reclaimed: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.ingested or self.quarantined)

    def summary(self) -> str:
        parts = [
            f"{len(self.ingested)} file(s) ingested ({sum(self.rows_ingested.values())} rows)",
            f"{len(self.skipped)} already ingested",
            f"{len(self.quarantined)} quarantined",
            f"{sum(self.quarantined_rows.values())} row(s) quarantined",
        ]
        if self.corrected:
            parts.append(f"{len(self.corrected)} correction(s) replaced earlier rows")
        if self.reclaimed:
            parts.append(f"written to after archiving, ingested again: {self.reclaimed}")
        if self.changed_while_read:
            parts.append(f"written to while read, left in landing: {self.changed_while_read}")
        if self.days:
            # Spans, not every day: a range run copies this into each day's record.
            spans = [a if a == b else f"{a}...{b}" for a, b in contiguous_ranges(self.days)]
            parts.append(f"{len(self.days)} day(s) touched: {', '.join(spans)}")
        return "; ".join(parts)


def landing_files(paths: DatasetPaths) -> list[Path]:
    """CSV and Parquet files waiting in the landing zone, by name; hidden/temp files ignored."""
    if not paths.landing.is_dir():
        return []
    files = []
    for path in paths.landing.iterdir():
        name = path.name
        if name.startswith((".", "_", "~")) or name.endswith((".tmp", ".part", ".partial")):
            continue
        if path.suffix.lower() in CSV_SUFFIXES | PARQUET_SUFFIXES and path.is_file():
            files.append(path)
    return sorted(files)


def archived_digests(paths: DatasetPaths) -> set[str]:
    if not paths.archive.is_dir():
        return set()
    return {p.name.split("__", 1)[0] for p in paths.archive.iterdir() if "__" in p.name}


def file_key(name: str) -> str:
    """The staged name of a landed file: readable stem plus a hash of the exact name."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
    return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def manifest_path(paths: DatasetPaths, name: str) -> Path:
    return paths.staged / MANIFESTS / f"{file_key(name)}.json"


def read_manifest(paths: DatasetPaths, name: str) -> dict[str, Any] | None:
    """What the current version of a landed file name contributed, or None if nothing."""
    try:
        return json.loads(manifest_path(paths, name).read_text())
    except FileNotFoundError:
        return None


# --------------------------------------------------------------------------- outcomes


def _reason_text(
    landed: Path, digest: str, size: int, outcome: str, reason: str, details: list[str]
) -> str:
    lines = [
        f"landed file: {landed.name}",
        f"content hash: {digest} ({size} bytes)",
        f"quarantined at: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"outcome: {outcome}",
        f"reason: {bounded(reason)}",
    ]
    if details:
        lines.append("details:")
        lines.extend(f"  - {bounded(d)}" for d in details[:MAX_DETAILS])
        if len(details) > MAX_DETAILS:
            lines.append(f"  - ... and {len(details) - MAX_DETAILS} more")
    return bounded("\n".join(lines), MAX_REASON_CHARS) + "\n"


def _quarantine_file(
    paths: DatasetPaths, landed: Path, digest: str, size: int, reason: str, details: list[str]
) -> Path | None:
    """Move the whole file into quarantine beside its reason; None if another process did."""
    target = paths.quarantine / f"{landed.stem}.{digest}{landed.suffix}"
    reason_file = target.with_name(target.name + ".reason.txt")
    outcome = "whole file quarantined, nothing ingested"
    if read_manifest(paths, landed.name) is not None:
        outcome += "; the rows of the earlier version of this file name stay"
    write_text_atomic(_reason_text(landed, digest, size, outcome, reason, details), reason_file)
    try:
        os.replace(landed, target)
    except FileNotFoundError:
        # Another process moved it first: keep the reason only if that was a quarantine too.
        if not target.exists():
            reason_file.unlink(missing_ok=True)
        return None
    return reason_file


def _day_counts(days: pd.Series) -> dict[str, int]:
    counts = days.dropna().value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _stage(
    contract: Contract,
    paths: DatasetPaths,
    landed: Path,
    digest: str,
    good: pd.DataFrame,
    bad_days: pd.Series,
    rows: int,
) -> list[str]:
    """Replace this file name's pieces and manifest; the days the old or new version fills."""
    event_days = good[contract.event_time.column].dt.strftime("%Y-%m-%d")
    key = file_key(landed.name)
    staged = _day_counts(event_days)
    # One conversion to Arrow for the whole file, rows grouped by day (in file order within
    # a day), then a slice per day: a history of many days costs its rows, not its days.
    order = event_days.reset_index(drop=True).dropna().sort_values(kind="stable")
    table = to_arrow(contract, good.reset_index(drop=True).iloc[order.index])
    bounds = order.to_numpy()
    for day in sorted(staged):
        start = int(bounds.searchsorted(day, side="left"))
        write_parquet_atomic(
            table.slice(start, staged[day]), paths.staged / f"date={day}" / f"{key}.parquet"
        )
    old = read_manifest(paths, landed.name) or {"days": {}}
    quarantined = _day_counts(bad_days)
    days = sorted(set(staged) | set(quarantined))
    for day in set(old["days"]) - set(staged):
        (paths.staged / f"date={day}" / f"{key}.parquet").unlink(missing_ok=True)
    manifest = {
        "name": landed.name,
        "digest": digest,
        "landed_at": datetime.now(UTC).isoformat(timespec="microseconds"),
        "rows": rows,
        "rows_quarantined_without_day": int(bad_days.isna().sum()),
        "days": {
            d: {"staged": staged.get(d, 0), "quarantined": quarantined.get(d, 0)} for d in days
        },
    }
    write_text_atomic(json.dumps(manifest, indent=1) + "\n", manifest_path(paths, landed.name))
    return sorted(set(days) | set(old["days"]))


def _is_relanding(paths: DatasetPaths, name: str, digest: str, archived: set[str]) -> bool:
    """The same bytes again: unchanged under this name, or already ingested under another."""
    current = read_manifest(paths, name)
    if current is not None:
        return current["digest"] == digest
    return digest in archived or any(paths.archive.glob(f"{digest}__*"))


def _ingest_one(
    contract: Contract,
    paths: DatasetPaths,
    landed: Path,
    report: IngestReport,
    archived: set,
    limits: IngestLimits,
) -> None:
    try:
        before = landed.stat()
        size = before.st_size
        digest = file_digest(landed, limits.max_file_bytes)
    except FileNotFoundError:
        return  # another process took it
    if _is_relanding(paths, landed.name, digest, archived):
        landed.unlink(missing_ok=True)
        report.skipped.append(landed.name)
        return

    try:
        check_limits(landed, limits)
        raw = read_landed(landed, contract).reset_index(drop=True)
        cast, violations = cast_and_check(contract, raw)
        bad = violations.bad
        n_bad, n_rows = int(bad.sum()), len(raw)
        if n_bad and n_bad / n_rows > contract.max_bad_row_fraction:
            raise Reject(
                f"{n_bad} of {n_rows} rows ({n_bad / n_rows:.1%}) break the contract, more than "
                f"max_bad_row_fraction={contract.max_bad_row_fraction}",
                violations.lines(),
            )
    except FileNotFoundError:
        return
    except Reject as reject:
        reason_file = _quarantine_file(paths, landed, digest, size, reject.reason, reject.details)
        if reason_file is not None:
            report.quarantined[landed.name] = reject.reason
            report.reason_files.append(str(reason_file))
        return

    if n_bad:
        rows_file = paths.quarantine / f"{landed.stem}.{digest}.rows.parquet"
        bad_rows = raw[bad].copy()
        bad_rows[REASON] = violations.reasons[bad]
        bad_rows[SOURCE_FILE] = landed.name
        write_parquet_atomic(bad_rows.astype(object).where(bad_rows.notna(), None), rows_file)
        reason_file = rows_file.with_name(rows_file.name + ".reason.txt")
        outcome = f"{n_bad} of {n_rows} rows quarantined in {rows_file.name}, the rest ingested"
        reason = f"{n_bad} row(s) break row-level rules of the contract"
        write_text_atomic(
            _reason_text(landed, digest, size, outcome, reason, violations.lines()), reason_file
        )
        report.quarantined_rows[landed.name] = n_bad
        report.reason_files.append(str(reason_file))

    good = cast[~bad].copy()
    good[SOURCE_FILE] = landed.name
    # Quarantined rows still count towards the day they are dated on, where one can be read.
    bad_days = cast.loc[bad, contract.event_time.column].dt.strftime("%Y-%m-%d")
    start, end = contract.partitions.start.isoformat(), contract.partitions.end
    outside = (bad_days < start) | (bad_days >= end.isoformat() if end else False)
    bad_days = bad_days.where(~outside, None)
    previous = read_manifest(paths, landed.name)
    days = _stage(contract, paths, landed, digest, good, bad_days, n_rows)
    with contextlib.suppress(FileNotFoundError):
        if not same_file_state(before, landed.stat()):
            # Written to while read: its staged rows stand until it is ingested again, as
            # a correction, once quiet (driftloop/data/landing.py).
            report.changed_while_read.append(landed.name)
        else:
            paths.archive.mkdir(parents=True, exist_ok=True)
            archived = paths.archive / f"{digest}__{landed.name}"
            # FileNotFoundError: another process archived the same file after staging the
            # same pieces.
            os.replace(landed, archived)
            mark_archived(archived, before)
    if previous is not None and previous["digest"] != digest:
        report.corrected[landed.name] = previous["digest"]
    report.ingested.append(landed.name)
    report.rows_ingested[landed.name] = len(good)
    report.rows_landed[landed.name] = n_rows
    report.days = sorted(set(report.days) | set(days))


def ingest_landing(
    contract: Contract,
    paths: DatasetPaths,
    names: list[str] | None = None,
    limits: IngestLimits | None = None,
) -> IngestReport:
    """Ingest the files waiting in the landing zone, or only those `names` (module docstring)."""
    report = IngestReport()
    archived = archived_digests(paths)
    limits = limits or IngestLimits.from_env()
    wanted = None if names is None else set(names)
    for landed in landing_files(paths):
        if wanted is None or landed.name in wanted:
            _ingest_one(contract, paths, landed, report, archived, limits)
    return report
