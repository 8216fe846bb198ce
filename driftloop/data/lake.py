"""Immutable Parquet partitions: atomic writes, and DuckDB reads over a range of days."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def write_parquet_atomic(frame: pd.DataFrame | pa.Table, path: Path) -> Path:
    """Write to a temporary file in the same folder, then rename: readers never see half a file."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(frame, pd.DataFrame):
        frame = pa.Table.from_pandas(frame, preserve_index=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(frame, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ParquetSink:
    """Appends Arrow tables of one schema to a Parquet file (`parquet_sink`)."""

    def __init__(self, path: str, dictionary_columns: list[str] | None) -> None:
        self._path = path
        self._dictionary = dictionary_columns
        self._writer = None

    def write(self, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        if self._writer is None:
            # Dictionary encoding only where asked: on a column of unique values (ids,
            # scores) the writer builds a dictionary, overflows it and falls back, in vain.
            self._writer = pq.ParquetWriter(
                self._path,
                table.schema,
                compression="zstd",
                use_dictionary=True if self._dictionary is None else self._dictionary,
            )
        self._writer.write_table(table)

    @property
    def started(self) -> bool:
        return self._writer is not None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


@contextmanager
def parquet_sink(path: Path, dictionary_columns: list[str] | None = None) -> Iterator[ParquetSink]:
    """A Parquet file written table by table and renamed into place when the block ends
    (atomic as `write_parquet_atomic`; removed on error). Write at least one table, if
    only an empty one: the file's schema is the first table's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    sink = ParquetSink(tmp, dictionary_columns)
    try:
        yield sink
        if not sink.started:
            raise ValueError(f"nothing was written to {path}")
        sink.close()
        os.replace(tmp, path)
    except BaseException:
        sink.close()
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return path


def days_between(start: date, end: date) -> list[str]:
    """Inclusive list of ISO days from start to end."""
    return [(start + timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def existing_partitions(table_dir: Path) -> list[str]:
    """ISO days that have a written partition under a table folder, sorted."""
    if not table_dir.exists():
        return []
    days = [p.parent.name.removeprefix("date=") for p in table_dir.glob("date=*/data.parquet")]
    return sorted(days)


def partition_files(table_dir: Path, days: Iterable[str]) -> list[Path]:
    """The partition files of the given days that exist, in day order."""
    files = [table_dir / f"date={d}" / "data.parquet" for d in sorted(set(days))]
    return [f for f in files if f.exists()]


def sql_file_list(files: list[Path]) -> str:
    """A DuckDB list literal of file paths, for read_parquet([...])."""
    quoted = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    return f"[{quoted}]"


BLOCKED_MARKER = "BLOCKED.json"


def blocked_marker(table_dir: Path, day: str) -> Path:
    """A partition whose blocking checks failed carries this file beside its data."""
    return table_dir / f"date={day}" / BLOCKED_MARKER


def is_blocked(table_dir: Path, day: str) -> bool:
    return blocked_marker(table_dir, day).exists()


def contiguous_ranges(days: Iterable[str]) -> list[tuple[str, str]]:
    """Sorted ISO days grouped into inclusive (first, last) runs of consecutive days."""
    ordered = sorted({date.fromisoformat(d) for d in days})
    ranges: list[tuple[str, str]] = []
    for day in ordered:
        if ranges and date.fromisoformat(ranges[-1][1]) + timedelta(days=1) == day:
            ranges[-1] = (ranges[-1][0], day.isoformat())
        else:
            ranges.append((day.isoformat(), day.isoformat()))
    return ranges
