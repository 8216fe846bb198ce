"""Ingestion from the landing zone: hash, read, cast, split bad rows out, stage per day, archive.

Every landed file ends in exactly one of three places, and nothing is ever lost:

- `archive/<hash>__<name>` after its good rows were staged as
  `lake/<dataset>/staged/date=D/<hash>.parquet` (one piece per local day it touches);
- `quarantine/<stem>.<hash><suffix>` (moved whole) when it cannot be used at all, beside a
  `.reason.txt` a person can read;
- deleted from landing when the archive already holds the same content (a re-landing).

Rows that break a row-level rule of the contract go to `quarantine/<stem>.<hash>.rows.parquet`
(original values plus `_reason`) while the rest of the file is ingested, unless the bad
share exceeds `contract.max_bad_row_fraction`, in which case the whole file is quarantined.

Safe to run in two processes at once: every output name is derived from the content hash,
every write is a temp file plus rename, and a file another process already moved away is
skipped (FileNotFoundError).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.assembly import assemble_partition, staged_pieces
from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.data.raw_table import REASON, SOURCE_FILE, conform, raw_schema, to_arrow
from driftloop.data.reading import CSV_SUFFIXES, PARQUET_SUFFIXES, Reject, read_landed
from driftloop.data.rules import cast_and_check
from driftloop.paths import DatasetPaths

# Names other modules import from here.
__all__ = [
    "REASON",
    "SOURCE_FILE",
    "IngestReport",
    "archived_digests",
    "assemble_partition",
    "conform",
    "file_digest",
    "ingest_landing",
    "landing_files",
    "raw_schema",
    "staged_pieces",
    "to_arrow",
]


# --------------------------------------------------------------------------- report


@dataclass
class IngestReport:
    """What one pass over the landing zone did (file names are the landed names)."""

    ingested: list[str] = field(default_factory=list)
    days: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    quarantined_rows: dict[str, int] = field(default_factory=dict)
    rows_ingested: dict[str, int] = field(default_factory=dict)
    reason_files: list[str] = field(default_factory=list)

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
        if self.days:
            parts.append(f"days touched: {', '.join(self.days)}")
        return "; ".join(parts)


# --------------------------------------------------------------------------- helpers


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


def file_digest(path: Path) -> str:
    """First 16 hex characters of the file's sha256: its identity in archive and lake."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def archived_digests(paths: DatasetPaths) -> set[str]:
    if not paths.archive.is_dir():
        return set()
    return {p.name.split("__", 1)[0] for p in paths.archive.iterdir() if "__" in p.name}


# --------------------------------------------------------------------------- outcomes


def _reason_text(
    landed: Path, digest: str, size: int, outcome: str, reason: str, details: list[str]
) -> str:
    lines = [
        f"landed file: {landed.name}",
        f"content hash: {digest} ({size} bytes)",
        f"quarantined at: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"outcome: {outcome}",
        f"reason: {reason}",
    ]
    if details:
        lines.append("details:")
        lines.extend(f"  - {d}" for d in details)
    return "\n".join(lines) + "\n"


def _quarantine_file(
    paths: DatasetPaths, landed: Path, digest: str, size: int, reason: str, details: list[str]
) -> Path | None:
    """Move the whole file into quarantine beside its reason; None if another process did."""
    target = paths.quarantine / f"{landed.stem}.{digest}{landed.suffix}"
    reason_file = target.with_name(target.name + ".reason.txt")
    text = _reason_text(
        landed, digest, size, "whole file quarantined, nothing ingested", reason, details
    )
    write_text_atomic(text, reason_file)
    try:
        os.replace(landed, target)
    except FileNotFoundError:
        # Another process moved it first: keep the reason only if that was a quarantine too.
        if not target.exists():
            reason_file.unlink(missing_ok=True)
        return None
    return reason_file


def _stage(contract: Contract, paths: DatasetPaths, good: pd.DataFrame, digest: str) -> list[str]:
    """Write one piece per local day; the piece name is the file hash, so reruns overwrite."""
    event_days = good[contract.event_time.column].dt.strftime("%Y-%m-%d")
    days = sorted(event_days.unique())
    for day in days:
        piece = good[event_days == day]
        write_parquet_atomic(
            to_arrow(contract, piece), paths.staged / f"date={day}" / f"{digest}.parquet"
        )
    return days


def _ingest_one(
    contract: Contract, paths: DatasetPaths, landed: Path, report: IngestReport, archived: set
) -> None:
    try:
        digest = file_digest(landed)
        size = landed.stat().st_size
    except FileNotFoundError:
        return  # another process took it
    if digest in archived or any(paths.archive.glob(f"{digest}__*")):
        # The same bytes were ingested before (maybe under another name): a copy is archived.
        landed.unlink(missing_ok=True)
        report.skipped.append(landed.name)
        return

    try:
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
    days = _stage(contract, paths, good, digest)
    paths.archive.mkdir(parents=True, exist_ok=True)
    # FileNotFoundError: another process archived the same file after staging the same pieces.
    with contextlib.suppress(FileNotFoundError):
        os.replace(landed, paths.archive / f"{digest}__{landed.name}")
    report.ingested.append(landed.name)
    report.rows_ingested[landed.name] = len(good)
    report.days = sorted(set(report.days) | set(days))


def ingest_landing(contract: Contract, paths: DatasetPaths) -> IngestReport:
    """Ingest every file waiting in the landing zone (see the module docstring)."""
    report = IngestReport()
    archived = archived_digests(paths)
    for landed in landing_files(paths):
        _ingest_one(contract, paths, landed, report, archived)
    return report
