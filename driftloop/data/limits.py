"""Limits a landed file must meet before it is read, checked from its size and first bytes only."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from driftloop.data.reading import PARQUET_SUFFIXES, Reject, bounded

_SAMPLE = 1 << 20


@dataclass(frozen=True)
class IngestLimits:
    """Bounds on one landed file; defaults fit any contract, environment variables override.

    - max_file_bytes (DRIFTLOOP_MAX_FILE_BYTES): larger files are quarantined unread.
    - max_header_bytes (DRIFTLOOP_MAX_HEADER_BYTES): a CSV whose first line is longer is
      quarantined after reading only that many bytes.
    - max_columns (DRIFTLOOP_MAX_COLUMNS): a file with more columns is quarantined (CSV:
      counted in the header; Parquet: from the footer).
    - quiet_seconds (DRIFTLOOP_LANDING_QUIET_SECONDS): the new-data sensor takes a file only
      once it was last modified at least this long ago (driftloop/data/landing.py).
    """

    max_file_bytes: int = 2 * 1024**3
    max_header_bytes: int = 256 * 1024
    max_columns: int = 2000
    quiet_seconds: int = 2

    @classmethod
    def from_env(cls) -> IngestLimits:
        def number(name: str, default: int, least: int = 1) -> int:
            raw = os.environ.get(name, "").strip()
            if not raw:
                return default
            try:
                return max(least, int(raw))
            except ValueError:
                raise ValueError(f"{name}={raw!r}: expected a whole number") from None

        return cls(
            max_file_bytes=number("DRIFTLOOP_MAX_FILE_BYTES", cls.max_file_bytes),
            max_header_bytes=number("DRIFTLOOP_MAX_HEADER_BYTES", cls.max_header_bytes),
            max_columns=number("DRIFTLOOP_MAX_COLUMNS", cls.max_columns),
            quiet_seconds=number("DRIFTLOOP_LANDING_QUIET_SECONDS", cls.quiet_seconds, least=0),
        )


def file_digest(path: Path, max_bytes: int | None = None) -> str:
    """First 16 hex characters of the file's sha256: its identity in archive and lake.

    A file over `max_bytes` is identified by its size and its first and last megabyte
    instead, so that an oversized file is quarantined without being read whole.
    """
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if max_bytes is not None and size > max_bytes:
            digest.update(f"sampled:{size}:".encode())
            digest.update(handle.read(_SAMPLE))
            handle.seek(max(0, size - _SAMPLE))
            digest.update(handle.read(_SAMPLE))
        else:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def check_limits(path: Path, limits: IngestLimits) -> None:
    """Reject a file over the size or width limit, reading at most its header or footer."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise Reject(
            f"file too large: {size} bytes, over the limit of {limits.max_file_bytes} "
            "(DRIFTLOOP_MAX_FILE_BYTES); not read"
        )
    if path.suffix.lower() in PARQUET_SUFFIXES:
        _check_parquet_width(path, limits)
    else:
        _check_csv_header(path, size, limits)


def _check_parquet_width(path: Path, limits: IngestLimits) -> None:
    import pyarrow.parquet as pq

    try:
        columns = pq.read_metadata(path).num_columns
    except FileNotFoundError:
        raise
    except Exception as error:  # not Parquet at all: no footer to read
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise Reject(f"unreadable parquet file: {bounded(first)}") from error
    if columns > limits.max_columns:
        raise Reject(
            f"too wide: {columns} columns, over the limit of {limits.max_columns} "
            "(DRIFTLOOP_MAX_COLUMNS); not read"
        )


def _check_csv_header(path: Path, size: int, limits: IngestLimits) -> None:
    with open(path, "rb") as handle:
        head = handle.read(limits.max_header_bytes + 1)
    if b"\x00" in head:
        raise Reject("binary content: NUL bytes in the first line(s), not a CSV text file")
    end = head.find(b"\n")
    if end < 0 and size > limits.max_header_bytes:
        raise Reject(
            f"header line longer than {limits.max_header_bytes} bytes "
            "(DRIFTLOOP_MAX_HEADER_BYTES): no line break found; not read"
        )
    header = head if end < 0 else head[:end]
    columns = header.count(b",") + 1 if header.strip() else 0
    if columns > limits.max_columns:
        raise Reject(
            f"too wide: {columns} columns in the header, over the limit of "
            f"{limits.max_columns} (DRIFTLOOP_MAX_COLUMNS); not read"
        )
