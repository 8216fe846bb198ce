"""Seeded benchmark data: the 2013 flights replicated to any size, and drift scenarios.

`replicated_flights(n_rows, days)` keeps the flights' own types and gaps (numeric weather
with missing hours, categorical carrier/origin/dest, missing tail numbers and plane years,
cancelled flights without delays) and their seasonality: target day d of D draws its rows
from the source days of the same stretch of 2013, so weather and delays still move
together, and each row keeps its time of day. Ids are made unique.

`drift_frames(n, scenario)` is a generator with realistic types - 20 numeric columns of
different shapes (normal, skewed, bounded, counts, a 4-valued code, heavy missingness) and
5 categorical ones (3 to 100 values, one with missing values) - and drift you control:
"none", "numeric_shift" (some numeric columns shifted by known multiples of their
standard deviation, some below and some above Evidently's 0.1 threshold), "category_mix"
(category shares moved toward another distribution) and "mixed" (both).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from driftloop.data.contract import Contract
    from driftloop.paths import DatasetPaths

START = date(2013, 1, 1)
SOURCE_DAYS = 365

# ------------------------------------------------------------------ flights, replicated


def replicated_flights(
    n_rows: int,
    days: int,
    start: date = START,
    seed: int = 0,
    source_offset_days: int = 0,
    *,
    total_days: int | None = None,
    first_day_index: int = 0,
    id_offset: int = 0,
) -> pd.DataFrame:
    """n_rows flights over `days` daily partitions from `start`, in the landed (raw) shape.

    Rows are drawn with replacement from the embedded 2013 flights; day d draws from the
    source days [offset + g * span, offset + (g + 1) * span), g = first_day_index + d,
    span = 365 / (total_days or days) (at least one day), so seasonality survives the
    stretch. `total_days`, `first_day_index` and `id_offset` let a long range be made in
    chunks (see `write_replicated_lake`). Sorted by scheduled departure.
    """
    import pandas as pd

    from driftloop.data.flights_source import all_flights

    source = all_flights()
    rng = np.random.default_rng(seed)
    departure = source["scheduled_departure"]
    first = departure.iloc[0].normalize()
    source_day = ((departure - first).dt.days).to_numpy()
    order = np.argsort(source_day, kind="stable")
    bounds = np.searchsorted(source_day[order], np.arange(SOURCE_DAYS + 1))
    span = max(SOURCE_DAYS / (total_days or days), 1.0)
    per_day = np.full(days, n_rows // days)
    per_day[: n_rows % days] += 1
    picks, target_day = [], []
    for d in range(days):
        g = first_day_index + d
        lo = int((source_offset_days + g * span) % SOURCE_DAYS)
        hi = min(SOURCE_DAYS, max(lo + 1, lo + int(span)))
        candidates = order[bounds[lo] : bounds[hi]]
        picks.append(rng.choice(candidates, size=int(per_day[d]), replace=True))
        target_day.append(np.full(int(per_day[d]), d, dtype=np.int64))
    index = np.concatenate(picks)
    day_index = np.concatenate(target_day)
    frame = source.iloc[index].reset_index(drop=True)
    time_of_day = frame["scheduled_departure"] - frame["scheduled_departure"].dt.normalize()
    frame["scheduled_departure"] = (
        pd.Timestamp(start) + pd.to_timedelta(day_index, unit="D") + time_of_day
    )
    frame["flight_id"] = (
        frame["flight_id"].str.slice(9)
        + "-r"
        + pd.Series(np.arange(id_offset, id_offset + n_rows), dtype="int64").astype(str)
    )
    return frame.sort_values(["scheduled_departure", "flight_id"], kind="stable").reset_index(
        drop=True
    )


def write_replicated_lake(
    contract: Contract,
    paths: DatasetPaths,
    n_rows: int,
    days: int,
    start: date = START,
    seed: int = 0,
    chunk_days: int = 10,
) -> list[str]:
    """Raw partitions of `replicated_flights(n_rows, days)`, made `chunk_days` at a time so
    that 10M rows never sit in memory at once. Returns the days written."""
    written: list[str] = []
    per_day = n_rows // days
    for first in range(0, days, chunk_days):
        count = min(chunk_days, days - first)
        rows = per_day * count + (n_rows - per_day * days if first + count == days else 0)
        frame = replicated_flights(
            rows,
            count,
            start + timedelta(days=first),
            seed + first,
            total_days=days,
            first_day_index=first,
            id_offset=per_day * first,
        )
        written += write_raw_lake(contract, paths, frame)
        del frame
    return written


def real_flights(start: date, days: int) -> pd.DataFrame:
    """The embedded flights of [start, start + days), unchanged."""
    from driftloop.data.flights_source import flights_between

    return flights_between(start, days)


def write_raw_lake(contract: Contract, paths: DatasetPaths, frame: pd.DataFrame) -> list[str]:
    """Write `frame` (landed shape) as raw partitions, one per local day; returns the days.

    The same schema the raw_data asset writes (contract types + `_source_file`), without
    ingestion and validation, which are not what these benchmarks measure.
    """
    from driftloop.data.ingest import SOURCE_FILE, to_arrow
    from driftloop.data.lake import write_parquet_atomic

    event = contract.event_time.column
    day_of_row = frame[event].dt.strftime("%Y-%m-%d")
    written = []
    for day, rows in frame.groupby(day_of_row, sort=True):
        rows = rows.assign(**{SOURCE_FILE: f"benchmark_{day}.parquet"})
        write_parquet_atomic(to_arrow(contract, rows), paths.partition_file("raw", str(day)))
        written.append(str(day))
    return written


def write_features_lake(contract: Contract, paths: DatasetPaths, days: list[str]) -> int:
    """Features partitions of `days` from the raw lake, as the features asset writes them."""
    from driftloop.features.writer import write_features

    return write_features(contract, paths, days).rows


def day_range(start: date, days: int) -> list[str]:
    return [(start + timedelta(days=i)).isoformat() for i in range(days)]


# ------------------------------------------------------------------------ drift frames

NUMERIC_COLUMNS = [f"n{k:02d}" for k in range(20)]
CATEGORICAL_COLUMNS = [f"c{k}" for k in range(5)]
DRIFT_KINDS: dict[str, str] = {
    **dict.fromkeys(NUMERIC_COLUMNS, "numeric"),
    **dict.fromkeys(CATEGORICAL_COLUMNS, "categorical"),
}
SCENARIOS = ("none", "numeric_shift", "category_mix", "mixed")
# Shift of the numeric columns, in units of the column's std (normed Wasserstein ~ shift):
# four below Evidently's 0.1 threshold, six above it, the rest unchanged.
NUMERIC_SHIFTS = {
    "n00": 0.03,
    "n01": 0.05,
    "n02": 0.2,
    "n03": 0.5,
    "n04": 0.15,
    "n08": 0.04,
    "n09": 0.3,
    "n12": 0.25,
    "n14": 0.06,
    "n17": 0.4,
}
# Weight of the other distribution mixed into each categorical column's shares.
CATEGORY_MIXES = {"c0": 0.05, "c1": 0.6, "c2": 0.5, "c3": 0.7, "c4": 0.04}

_C0 = np.array(["EWR", "JFK", "LGA"], dtype=object)
_C1 = np.array(
    [
        "9E",
        "AA",
        "AS",
        "B6",
        "DL",
        "EV",
        "F9",
        "FL",
        "HA",
        "MQ",
        "OO",
        "UA",
        "US",
        "VX",
        "WN",
        "YV",
    ],
    dtype=object,
)
_C2 = np.array([f"D{k:03d}" for k in range(100)], dtype=object)
_C3 = np.array(["N", "Y"], dtype=object)
_C4 = np.array(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], dtype=object)
_CATEGORIES = [_C0, _C1, _C2, _C3, _C4]


def _shares(k: int, power: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, k + 1) ** power
    return weights / weights.sum()


def _numeric(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    cols = {}
    for k in range(8):
        cols[f"n{k:02d}"] = rng.normal(10.0 * k, 1.0 + k, n)
    for k in range(8, 12):
        cols[f"n{k:02d}"] = rng.lognormal(1.0 + 0.2 * k, 0.6, n)
    cols["n12"] = rng.uniform(0.0, 360.0, n)  # like wind_dir
    cols["n13"] = rng.uniform(-1.0, 1.0, n)
    cols["n14"] = rng.poisson(3.0, n).astype(np.float64)  # counts: > 5 distinct values
    cols["n15"] = rng.poisson(12.0, n).astype(np.float64)
    cols["n16"] = rng.integers(0, 4, n).astype(np.float64)  # 4 values: Jensen-Shannon
    cols["n17"] = rng.exponential(2.0, n)
    cols["n18"] = rng.normal(1013.0, 7.0, n)  # like pressure, 20% missing below
    cols["n19"] = np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(3, 1.0, n))
    # Missing values, as in the flights' weather and plane columns.
    for name, share in (("n05", 0.02), ("n10", 0.1), ("n18", 0.2), ("n19", 0.05)):
        cols[name][rng.random(n) < share] = np.nan
    return cols


def _categorical(rng: np.random.Generator, n: int, mixes: dict[str, float]):
    cols = {}
    for k, values in enumerate(_CATEGORIES):
        name = f"c{k}"
        base = _shares(len(values), 1.0)
        other = base[::-1]
        p = (1 - mixes.get(name, 0.0)) * base + mixes.get(name, 0.0) * other
        cols[name] = values[rng.choice(len(values), size=n, p=p)]
    cols["c4"][rng.random(n) < 0.05] = None
    return cols


def drift_frame(n: int, seed: int, shifts: dict[str, float] | None = None, mixes=None):
    """One side: n rows; `shifts` moves numeric columns (x std), `mixes` category shares."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    numeric = _numeric(rng, n)
    for name, shift in (shifts or {}).items():
        values = numeric[name]
        numeric[name] = values + shift * float(np.nanstd(values))
    return pd.DataFrame({**numeric, **_categorical(rng, n, mixes or {})})


def drift_frames(n: int, scenario: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(reference, current), n rows each, for one of SCENARIOS."""
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    shifts = NUMERIC_SHIFTS if scenario in ("numeric_shift", "mixed") else {}
    mixes = CATEGORY_MIXES if scenario in ("category_mix", "mixed") else {}
    reference = drift_frame(n, seed)
    current = drift_frame(n, seed + 1, shifts, mixes)
    return reference, current


def write_drift_frames(folder: Path, n: int, scenario: str, seed: int = 0) -> tuple[Path, Path]:
    """The scenario's two sides as Parquet files in `folder` (for child processes)."""
    folder.mkdir(parents=True, exist_ok=True)
    reference, current = drift_frames(n, scenario, seed)
    ref_path = folder / f"{scenario}_{n}_reference.parquet"
    cur_path = folder / f"{scenario}_{n}_current.parquet"
    reference.to_parquet(ref_path, index=False)
    current.to_parquet(cur_path, index=False)
    return ref_path, cur_path


# ------------------------------------------------------------------- an hourly history

HOURLY_START = date(2019, 1, 1)
HOURLY_SITES = np.array([f"site_{k:02d}" for k in range(12)], dtype=object)


def hourly_history(days: int, start: date = HOURLY_START, seed: int = 3) -> pd.DataFrame:
    """One row an hour for `days` days: a reading a new user might keep as one history file
    (ids, a timestamp, four numeric columns with a daily cycle, a free categorical column,
    a yes/no target)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = days * 24
    ts = pd.date_range(pd.Timestamp(start), periods=n, freq="h")
    hour = ts.hour.to_numpy()
    cycle = np.sin(2 * np.pi * hour / 24)
    load = 50 + 20 * cycle + rng.normal(0, 5, n)
    temp = 12 + 8 * cycle + rng.normal(0, 2, n)
    frame = pd.DataFrame(
        {
            "reading_id": np.arange(n).astype(str),
            "ts": ts,
            "load": load.round(3),
            "temperature": temp.round(2),
            "humidity": rng.uniform(20, 90, n).round(1),
            "pressure": rng.normal(1013, 6, n).round(1),
            "site": HOURLY_SITES[rng.integers(0, len(HOURLY_SITES), n)],
        }
    )
    frame["peak"] = (load + rng.normal(0, 5, n) > 65).astype("int64")
    return frame


def hourly_contract(name: str, days: int, start: date = HOURLY_START) -> str:
    """The contract of `hourly_history` (YAML), its partitions covering the history."""
    end = start + timedelta(days=days)
    return (
        f"name: {name}\n"
        "description: a generated hourly history (benchmarks/data.py)\n"
        "event_time: {column: ts, timezone: UTC}\n"
        "id_columns: [reading_id]\n"
        "target: {column: peak}\n"
        "task: binary\n"
        "label_delay: 1d\n"
        f"partitions: {{start: {start.isoformat()}, end: {end.isoformat()}}}\n"
        "columns:\n"
        "  reading_id: {type: categorical, nullable: false}\n"
        "  ts: {type: timestamp, nullable: false}\n"
        "  load: {type: numeric}\n"
        "  temperature: {type: numeric, min: -60, max: 60}\n"
        "  humidity: {type: numeric, min: 0, max: 100}\n"
        "  pressure: {type: numeric}\n"
        "  site: {type: categorical}\n"
        "  peak: {type: numeric, nullable: false, min: 0, max: 1}\n"
        "features: [load, temperature, humidity, pressure, site]\n"
    )
