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
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

from driftloop.data.contract import Column, ColumnType, Contract
from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.paths import DatasetPaths

SOURCE_FILE = "_source_file"
REASON = "_reason"
CSV_SUFFIXES = {".csv"}
PARQUET_SUFFIXES = {".parquet", ".pq"}
NA_STRINGS = ["NA", ""]
MAX_EXAMPLES = 5

# Ends with 'Z' or a UTC offset after a time part: '2013-01-01T10:15:00Z', '... 05:15-05:00'.
_TZ_SUFFIX = re.compile(r"\d[T ]\d.*(?:Z|[+-]\d{2}:?\d{2})$")
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


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


class _Reject(Exception):
    """The whole file is unusable; `details` are the lines of its reason file."""

    def __init__(self, reason: str, details: list[str] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details or []


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


def raw_schema(contract: Contract) -> pa.Schema:
    """Arrow schema of staged pieces and raw partitions: contract columns + `_source_file`."""
    import pyarrow as pa

    arrow = {
        ColumnType.numeric: pa.float64(),
        ColumnType.categorical: pa.string(),
        ColumnType.boolean: pa.bool_(),
        # Microseconds: DuckDB's native TIMESTAMP, so downstream SQL needs no casts.
        ColumnType.timestamp: pa.timestamp("us"),
    }
    fields = [pa.field(n, arrow[c.type]) for n, c in contract.columns.items()]
    return pa.schema([*fields, pa.field(SOURCE_FILE, pa.string())])


def conform(contract: Contract, frame: pd.DataFrame) -> pd.DataFrame:
    """Stable pandas dtypes for a raw frame, whatever it was read from (also when empty).

    numeric -> float64, categorical -> object (str/None), boolean -> nullable 'boolean',
    timestamp -> datetime64[ns] (naive, contract zone), `_source_file` -> object.
    """
    import pandas as pd

    out = {}
    for name, column in contract.columns.items():
        values = frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
        values = values.reset_index(drop=True)
        if column.type == ColumnType.numeric:
            out[name] = values.astype("float64")
        elif column.type == ColumnType.categorical:
            out[name] = values.astype(object).where(values.notna(), None)
        elif column.type == ColumnType.boolean:
            out[name] = values.astype("boolean")
        else:
            out[name] = values.astype("datetime64[ns]")
    source = frame[SOURCE_FILE] if SOURCE_FILE in frame else pd.Series([None] * len(frame))
    out[SOURCE_FILE] = source.reset_index(drop=True).astype(object)
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def to_arrow(contract: Contract, frame: pd.DataFrame) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_pandas(
        conform(contract, frame), schema=raw_schema(contract), preserve_index=False
    )


def _example(value: object) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return "null"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _examples(values: pd.Series) -> list[str]:
    import pandas as pd

    return [_example(v) for v in pd.unique(values.astype(object))[:MAX_EXAMPLES]]


def _fmt_rule_value(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# --------------------------------------------------------------------------- reading


def _read(path: Path, contract: Contract) -> pd.DataFrame:
    """The landed file as a frame of the contract's columns (CSV as strings, Parquet typed)."""
    import pandas as pd
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    try:
        if suffix in PARQUET_SUFFIXES:
            table = pq.read_table(path)
            frame = table.to_pandas()
        else:
            # Strings only: casting is ours, so a bad cell is reported instead of guessed at.
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_values=NA_STRINGS, encoding="utf-8"
            )
    except FileNotFoundError:
        raise
    except pd.errors.EmptyDataError as error:
        raise _Reject("empty file: no header and no rows") from error
    except Exception as error:  # corrupt Parquet, binary CSV, bad encoding...
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise _Reject(f"unreadable {suffix.lstrip('.')} file: {first}") from error
    frame.columns = [str(c).strip() for c in frame.columns]
    if len(frame) == 0:
        raise _Reject("empty file: no rows", [f"columns found: {list(frame.columns)}"])
    missing = [c for c in contract.required_columns if c not in frame.columns]
    if missing:
        raise _Reject(
            f"missing required column(s) {missing}",
            [
                f"required by the contract: {missing}",
                f"columns found in the file: {list(frame.columns)}",
            ],
        )
    return frame


def _parse_timestamps(values: pd.Series, contract: Contract) -> pd.Series:
    """Naive local timestamps in the contract's zone; NaT where a value cannot be parsed."""
    import pandas as pd

    zone = contract.event_time.timezone
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return values.dt.tz_convert(zone).dt.tz_localize(None).astype("datetime64[ns]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return values.astype("datetime64[ns]")
    result = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    present = values.notna()
    if not present.any():
        return result
    if not (pd.api.types.is_string_dtype(values.dtype) or values.dtype == object):
        return result  # numbers are not timestamps: leave NaT, reported as not castable
    text = values[present].astype(str).str.strip()
    aware = text.str.contains(_TZ_SUFFIX)
    if aware.any():
        parsed = pd.to_datetime(text[aware], utc=True, errors="coerce", format="ISO8601")
        result[parsed.index] = parsed.dt.tz_convert(zone).dt.tz_localize(None)
    naive = text[~aware]
    if len(naive):
        parsed = pd.to_datetime(naive, errors="coerce", format="ISO8601")
        retry = parsed.isna()
        if retry.any():  # other layouts ('01/02/2013 05:15'), value by value
            parsed[retry] = pd.to_datetime(naive[retry], errors="coerce", format="mixed")
        result[parsed.index] = parsed
    return result


def _cast(values: pd.Series, column: Column, contract: Contract) -> pd.Series:
    """Cast one column; values that cannot be cast become null (the caller reports them)."""
    import pandas as pd

    if column.type == ColumnType.numeric:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("float64")
        return pd.to_numeric(values, errors="coerce").astype("float64")
    if column.type == ColumnType.boolean:
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype("boolean")
        text = values.astype(str).str.strip().str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[text.isin(_TRUE) & values.notna()] = True
        out[text.isin(_FALSE) & values.notna()] = False
        return out
    if column.type == ColumnType.categorical:
        if pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty"):  # the fast case
            return values.astype(object).where(values.notna(), None)
        if pd.api.types.is_float_dtype(values.dtype):
            # 3.0 -> '3': integers stored as floats (NULLs force that) keep their spelling.
            text = values.map(lambda v: _fmt_rule_value(v) if pd.notna(v) else None)
        else:
            text = values.map(lambda v: str(v) if pd.notna(v) else None)
        return text.astype(object)
    return _parse_timestamps(values, contract)


# --------------------------------------------------------------------------- rules


@dataclass
class _Violations:
    """Row-level problems of one file: per rule, the bad row positions and their values."""

    reasons: pd.Series  # per row, '; '-joined reasons ('' when the row is fine)
    rules: dict[str, list] = field(default_factory=dict)  # rule text -> offending values

    def add(self, mask: pd.Series, rule: str, shown: pd.Series) -> None:
        if not mask.any():
            return
        texts = rule + ": value " + shown[mask].map(_example)
        joined = self.reasons[mask].where(self.reasons[mask] == "", self.reasons[mask] + "; ")
        self.reasons[mask] = joined + texts
        self.rules.setdefault(rule, []).extend(shown[mask].tolist())

    @property
    def bad(self) -> pd.Series:
        return self.reasons != ""

    def lines(self) -> list[str]:
        import pandas as pd

        out = []
        for rule, values in self.rules.items():
            examples = ", ".join(_examples(pd.Series(values, dtype=object)))
            out.append(f"{rule}: {len(values)} row(s), e.g. {examples}")
        return out


def _cast_and_check(contract: Contract, raw: pd.DataFrame) -> tuple[pd.DataFrame, _Violations]:
    """Cast every contract column and collect row-level rule violations."""
    import pandas as pd

    cast: dict[str, pd.Series] = {}
    violations = _Violations(reasons=pd.Series("", index=raw.index, dtype=object))
    event_column = contract.event_time.column
    for name, column in contract.columns.items():
        # An optional column the file lacks is all null (and still meets nullable rules).
        original = raw[name] if name in raw else pd.Series(None, index=raw.index, dtype=object)
        values = _cast(original, column, contract)
        uncastable = original.notna() & values.isna()
        if uncastable.any() and uncastable.sum() == original.notna().sum():
            # Not one value fits: the column itself is of the wrong type.
            raise _Reject(
                f"column '{name}' is not castable to {column.type.value}",
                [
                    f"column '{name}' declared {column.type.value}: "
                    f"{int(uncastable.sum())} value(s) cannot be cast, "
                    f"e.g. {', '.join(_examples(original[uncastable]))}"
                ],
            )
        what = "event time" if name == event_column else column.type.value
        violations.add(uncastable, f"column '{name}' not castable to {what}", original)
        cast[name] = values

        if not column.nullable or name == event_column:
            rule = "event time is null" if name == event_column else "rule nullable=false"
            violations.add(original.isna(), f"column '{name}' {rule}", original.astype(object))
        if column.type == ColumnType.numeric:
            if column.min is not None:
                violations.add(
                    values < column.min,
                    f"column '{name}' rule min={_fmt_rule_value(column.min)}",
                    values.map(_fmt_rule_value),
                )
            if column.max is not None:
                violations.add(
                    values > column.max,
                    f"column '{name}' rule max={_fmt_rule_value(column.max)}",
                    values.map(_fmt_rule_value),
                )
        if column.allowed is not None:
            if column.type == ColumnType.boolean:
                allowed = {bool(v) for v in column.allowed}
                outside = values.notna() & ~values.isin(list(allowed))
            else:
                allowed_text = {str(v) for v in column.allowed}
                outside = values.notna() & ~values.isin(allowed_text)
            violations.add(outside, f"column '{name}' rule allowed", values.astype(object))
    # A row dated outside the contract's partitions has no partition to live in.
    event = cast[event_column]
    start, end = contract.partitions.start, contract.partitions.end
    outside_range = event < pd.Timestamp(start)
    rule = f"partitions.start={start}"
    if end is not None:
        outside_range |= event >= pd.Timestamp(end)
        rule = f"partitions [{start}, {end})"
    violations.add(outside_range, f"column '{event_column}' rule {rule}", event.astype(object))
    return pd.DataFrame(cast, index=raw.index), violations


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
        raw = _read(landed, contract).reset_index(drop=True)
        cast, violations = _cast_and_check(contract, raw)
        bad = violations.bad
        n_bad, n_rows = int(bad.sum()), len(raw)
        if n_bad and n_bad / n_rows > contract.max_bad_row_fraction:
            raise _Reject(
                f"{n_bad} of {n_rows} rows ({n_bad / n_rows:.1%}) break the contract, more than "
                f"max_bad_row_fraction={contract.max_bad_row_fraction}",
                violations.lines(),
            )
    except FileNotFoundError:
        return
    except _Reject as reject:
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


# --------------------------------------------------------------------------- assembly


def staged_pieces(paths: DatasetPaths, day: str) -> list[Path]:
    folder = paths.staged / f"date={day}"
    if not folder.is_dir():
        return []
    pieces = [p for p in folder.glob("*.parquet") if not p.name.startswith(".")]
    # Oldest first, so that on duplicate ids the most recently landed version wins.
    return sorted(pieces, key=lambda p: (p.stat().st_mtime_ns, p.name))


def assemble_partition(contract: Contract, paths: DatasetPaths, day: str) -> pd.DataFrame:
    """All staged rows of one local day, de-duplicated on the id columns, in event-time order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = raw_schema(contract)
    tables = []
    for piece in staged_pieces(paths, day):
        try:
            tables.append(pq.read_table(piece, schema=schema))
        except FileNotFoundError:
            continue
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    frame = conform(contract, table.to_pandas())
    if contract.id_columns and len(frame):
        frame = frame.drop_duplicates(subset=contract.id_columns, keep="last")
    order = [contract.event_time.column, *contract.id_columns]
    frame = frame.sort_values(order, kind="stable", na_position="last")
    return frame.reset_index(drop=True)


def source_file_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Rows per landed file in a raw frame."""
    if SOURCE_FILE not in frame or not len(frame):
        return {}
    return dict(Counter(frame[SOURCE_FILE].dropna().astype(str)))
