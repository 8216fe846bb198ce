"""Write the features table's daily partitions for a range of days, a bounded chunk at a time.

`build_features` holds a whole range in memory, and DuckDB's working set is several times
the result (docs/performance.md). A range is therefore cut into chunks of
consecutive days of at most `max_rows` raw rows (counted from the Parquet footers, no data
read); each chunk is one query with its own lookback days, written day by day and dropped
before the next. The rows written are identical whatever the chunking: a day's features
depend only on the raw rows up to that day (tests/test_features.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.faults import fault_point
from driftloop.features.definition import build_features
from driftloop.names import DAY, FEATURES_TABLE, RAW_TABLE
from driftloop.paths import DatasetPaths

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# Raw rows per chunk: bounds a chunk's peak memory to a few GB on flights-shaped rows.
DEFAULT_MAX_ROWS = 1_000_000


@dataclass
class WrittenFeatures:
    """What a range write produced: per-day row counts and the statistics the asset shows."""

    rows_per_day: dict[str, int] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    labelled_rows: int = 0
    label_sum: float = 0.0
    null_counts: dict[str, int] = field(default_factory=dict)
    skipped_lookback_days: list[str] = field(default_factory=list)
    chunks: list[tuple[str, str]] = field(default_factory=list)
    sql: str = ""  # the first chunk's query (the others differ only in files and days)

    @property
    def rows(self) -> int:
        return sum(self.rows_per_day.values())

    @property
    def label_mean(self) -> float | None:
        return self.label_sum / self.labelled_rows if self.labelled_rows else None

    def null_fraction(self, feature: str) -> float:
        return self.null_counts.get(feature, 0) / self.rows if self.rows else 0.0


def raw_rows(paths: DatasetPaths, day: str) -> int:
    """Rows in a day's raw partition, from its Parquet footer (0 when there is none)."""
    import pyarrow.parquet as pq

    path = paths.partition_file(RAW_TABLE, day)
    return pq.read_metadata(path).num_rows if path.exists() else 0


def plan_chunks(paths: DatasetPaths, days: list[str], max_rows: int) -> list[list[str]]:
    """Consecutive runs of `days` of at most `max_rows` raw rows each (a bigger day alone)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    current_rows = 0
    for day in sorted(days):
        rows = raw_rows(paths, day)
        if current and current_rows + rows > max_rows:
            chunks.append(current)
            current, current_rows = [], 0
        current.append(day)
        current_rows += rows
    if current:
        chunks.append(current)
    return chunks


def write_features(
    contract: Contract,
    paths: DatasetPaths,
    days: list[str],
    max_rows: int = DEFAULT_MAX_ROWS,
    on_chunk: Callable[[list[str], int], None] | None = None,
) -> WrittenFeatures:
    """Build and write the features partition of every day in `days` (one file per day,
    empty for a day without rows), `max_rows` raw rows per query at most.

    `on_chunk(days, rows)` is called after each chunk is written (progress for logs).
    """
    written = WrittenFeatures(null_counts=dict.fromkeys(contract.features, 0))
    for chunk in plan_chunks(paths, days, max_rows):
        frame = build_features(
            contract, paths, date.fromisoformat(chunk[0]), date.fromisoformat(chunk[-1])
        )
        written.sql = written.sql or frame.attrs["sql"]
        for skipped in frame.attrs["skipped_lookback_days"]:
            if skipped not in written.skipped_lookback_days:
                written.skipped_lookback_days.append(skipped)
        written.chunks.append((chunk[0], chunk[-1]))
        labels = frame["label"]
        written.labelled_rows += int(labels.notna().sum())
        written.label_sum += float(labels.sum())
        for name, count in frame[contract.features].isna().sum().items():
            written.null_counts[str(name)] += int(count)
        # Row positions per day, and one day's rows copied at a time: a dict of every
        # group would hold a second copy of the chunk.
        by_day = frame.groupby(DAY, sort=True).indices if len(frame) else {}
        for day in chunk:
            rows = frame.iloc[by_day[day]] if day in by_day else frame.iloc[0:0]
            written.files[day] = write_parquet_atomic(
                rows.reset_index(drop=True), paths.partition_file(FEATURES_TABLE, day)
            )
            written.rows_per_day[day] = len(rows)
        if on_chunk is not None:
            on_chunk(chunk, len(frame))
        del frame, by_day
    fault_point("daily_features")
    return written
