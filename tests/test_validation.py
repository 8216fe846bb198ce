"""Partition checks on handcrafted raw frames: each check passes on good data and can fail."""

from __future__ import annotations

import pandas as pd
import pytest

from driftloop.data.contract import Contract
from driftloop.data.ingest import SOURCE_FILE, conform
from driftloop.data.validation import (
    BLOCKING_CHECKS,
    CHECK_NAMES,
    CheckOutcome,
    failed_blocking,
    validate_partition,
)

DAY = "2013-01-01"


def _good(contract: Contract, rows: int = 10) -> pd.DataFrame:
    """A raw frame as ingestion writes it: every contract column, conformed dtypes."""
    frame = pd.DataFrame(
        {
            "flight_id": [f"20130101-UA{i}-EWR-515" for i in range(rows)],
            "scheduled_departure": pd.date_range("2013-01-01 05:15", periods=rows, freq="h"),
            "carrier": ["UA", "AA", "B6", "DL", "9E"] * (rows // 5),
            "flight": [1545.0 + i for i in range(rows)],
            "tailnum": ["N14228"] * rows,
            "origin": ["EWR", "JFK"] * (rows // 2),
            "dest": ["IAH"] * rows,
            "distance": [1400.0] * rows,
            "dep_delay": [2.0] * rows,
            "arr_delay": [11.0] * rows,
            "plane_year": [1999.0] * rows,
            SOURCE_FILE: ["a.csv"] * (rows - 2) + ["b.parquet"] * 2,
        }
    )
    for column in ("temp", "dewp", "humid", "wind_dir", "wind_speed", "precip", "visib"):
        frame[column] = 10.0
    frame["pressure"] = 1012.0
    frame["wind_gust"] = None
    return conform(contract, frame)


def _by_name(outcomes: list[CheckOutcome]) -> dict[str, CheckOutcome]:
    return {o.name: o for o in outcomes}


def _check(contract: Contract, frame: pd.DataFrame, name: str, history=(10, 10)) -> CheckOutcome:
    return _by_name(validate_partition(contract, frame, DAY, list(history)))[name]


def test_good_frame_passes_every_check(flights_contract: Contract) -> None:
    outcomes = validate_partition(flights_contract, _good(flights_contract), DAY, [10, 12, 9])
    assert [o.name for o in outcomes] == CHECK_NAMES
    assert all(o.passed for o in outcomes), [o.description for o in outcomes if not o.passed]
    assert failed_blocking(outcomes) == []
    blocking = {o.name: o.blocking for o in outcomes}
    assert [n for n, b in blocking.items() if b] == BLOCKING_CHECKS
    assert blocking["row_count"] is False
    schema = _by_name(outcomes)["schema"]
    assert {row["column"] for row in schema.metadata["table"]} == set(flights_contract.columns)


def test_schema_fails_on_missing_column_and_wrong_type(flights_contract: Contract) -> None:
    frame = _good(flights_contract).drop(columns=["dest"])
    frame["distance"] = frame["distance"].astype(str)
    outcome = _check(flights_contract, frame, "schema")
    assert not outcome.passed and outcome.blocking
    assert "missing column(s) ['dest']" in outcome.description
    assert "wrong type in column(s) ['distance']" in outcome.description
    assert outcome.metadata["columns"] == ["dest", "distance"]
    actual = {row["column"]: row["actual"] for row in outcome.metadata["table"]}
    assert actual["dest"] == "missing" and actual["distance"] == "object"
    # The other checks still run on what is there.
    assert _check(flights_contract, frame, "allowed_values").passed


def test_null_fractions_fail_on_nullable_false_and_on_max_fraction(
    flights_contract: Contract,
) -> None:
    frame = _good(flights_contract)
    frame.loc[9, "carrier"] = None
    frame.loc[[0, 1, 2, 3], "tailnum"] = None  # 40% > max_null_fraction 0.3
    outcome = _check(flights_contract, frame, "null_fractions")
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["columns"] == ["carrier", "tailnum"]
    assert outcome.metadata["failing_rows"] == 5
    assert "column 'carrier' rule nullable=false: 1 of 10 null" in outcome.description
    assert "column 'tailnum' rule max_null_fraction=0.3: 4 of 10 null (40.0%)" in (
        outcome.description
    )
    assert outcome.metadata["source_files"] == {"a.csv": 4, "b.parquet": 1}
    # wind_gust is all null but has no limit: fine.
    assert _check(flights_contract, _good(flights_contract), "null_fractions").passed


def test_value_ranges_fail_with_examples_and_source_files(flights_contract: Contract) -> None:
    frame = _good(flights_contract)
    frame.loc[[8, 9], "distance"] = [99999.0, 7000.0]
    frame.loc[0, "humid"] = -5.0
    outcome = _check(flights_contract, frame, "value_ranges")
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["columns"] == ["distance", "humid"]
    assert outcome.metadata["examples"]["distance"] == [99999, 7000]
    assert outcome.metadata["failing_rows"] == 3
    assert outcome.metadata["source_files"] == {"b.parquet": 2, "a.csv": 1}
    assert "column 'distance' rule min=1 max=6000: 2 row(s) outside" in outcome.description


def test_allowed_values_fail(flights_contract: Contract) -> None:
    frame = _good(flights_contract)
    frame.loc[3, "carrier"] = "ZZ"
    frame.loc[4, "origin"] = "BOS"
    outcome = _check(flights_contract, frame, "allowed_values")
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["columns"] == ["carrier", "origin"]
    assert outcome.metadata["examples"] == {"carrier": ["ZZ"], "origin": ["BOS"]}
    assert "column 'carrier' rule allowed: 1 row(s)" in outcome.description


def test_duplicate_ids_fail_and_pass_trivially_without_ids(flights_contract: Contract) -> None:
    frame = _good(flights_contract)
    frame.loc[5, "flight_id"] = frame.loc[4, "flight_id"]
    outcome = _check(flights_contract, frame, "duplicate_ids")
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["failing_rows"] == 2
    assert outcome.metadata["examples"] == [frame.loc[4, "flight_id"]]

    no_ids = flights_contract.model_copy(update={"id_columns": []})
    outcome = _check(no_ids, frame, "duplicate_ids")
    assert outcome.passed and "no id columns" in outcome.description


def test_event_time_outside_the_partition_fails(flights_contract: Contract) -> None:
    frame = _good(flights_contract)
    frame.loc[9, "scheduled_departure"] = pd.Timestamp("2013-01-02 00:30")
    frame.loc[8, "scheduled_departure"] = pd.NaT
    outcome = _check(flights_contract, frame, "event_time_in_partition")
    assert not outcome.passed and outcome.blocking
    assert outcome.metadata["failing_rows"] == 2
    assert "2013-01-02 00:30:00" in outcome.metadata["examples"]
    assert outcome.metadata["source_files"] == {"b.parquet": 2}
    assert _check(flights_contract, frame.iloc[:8], "event_time_in_partition").passed


@pytest.mark.parametrize(
    ("history", "passed"),
    [
        ((), True),
        ((10, 10), True),
        ((33, 33), True),
        ((34, 34), False),
        ((4, 4), True),
        ((3, 3), False),
    ],
)
def test_row_count_is_a_warning_against_the_trailing_mean(
    flights_contract: Contract, history: tuple[int, ...], passed: bool
) -> None:
    outcome = _check(flights_contract, _good(flights_contract), "row_count", history)
    assert outcome.passed is passed
    assert outcome.blocking is False
    assert outcome.metadata["rows"] == 10
    if not history:
        assert "no earlier partitions" in outcome.description
    else:
        assert outcome.metadata["trailing_row_counts"] == list(history)


def test_empty_frame_keeps_blocking_checks_green_but_row_count_warns(
    flights_contract: Contract,
) -> None:
    empty = _good(flights_contract).iloc[0:0]
    outcomes = _by_name(validate_partition(flights_contract, empty, DAY, [800, 900]))
    assert all(outcomes[name].passed for name in BLOCKING_CHECKS)
    assert not outcomes["row_count"].passed


def test_integer_codes_spelled_as_floats_are_the_same_categories() -> None:
    """A CSV written from integer codes with NULLs spells 3 as '3.0': the categorical
    cast reads it as the code '3' (other text, '1.5' included, is left as it is)."""
    from driftloop.data.contract import Column
    from driftloop.data.reading import cast_column

    values = pd.Series(["2.0", "1", None, "AA", "10.00", "1.5"], dtype=object)
    cast = cast_column(values, Column(type="categorical"), None)
    assert list(cast) == ["2", "1", None, "AA", "10", "1.5"]


def test_many_days_checked_at_once_match_each_day_checked_alone(tmp_path) -> None:
    """validate_days (one grouped pass) gives every day exactly validate_partition's
    outcomes, on clean days and on days that break each row-level rule."""
    from benchmarks.data import hourly_contract, hourly_history
    from driftloop.data.assembly import AssembledDay
    from driftloop.data.contract import load_contract
    from driftloop.data.validation import validate_days, validate_partition

    (tmp_path / "hourly.yaml").write_text(hourly_contract("hourly", 5))
    contract = load_contract(tmp_path / "hourly.yaml")
    rows = hourly_history(5).assign(**{SOURCE_FILE: "history.csv"})
    rows.loc[30:31, "humidity"] = 150.0  # day 2: outside max
    rows.loc[50, "reading_id"] = None  # day 3: null in a non-nullable column
    rows.loc[60, "ts"] = pd.Timestamp("2019-01-05 01:00")  # day 3: a row of another day
    rows.loc[80:95, "temperature"] = None  # day 4: nulls where allowed
    frame = conform(contract, rows)
    days = {}
    for day in ["2019-01-01", "2019-01-02", "2019-01-03", "2019-01-04", "2019-01-05"]:
        start = (pd.Timestamp(day) - pd.Timestamp("2019-01-01")).days * 24
        part = frame.iloc[start : start + 24].reset_index(drop=True)
        days[day] = AssembledDay(day, part, part.iloc[0:0], len(part), 0, 0)
    trailing = {day: [24] * i for i, day in enumerate(days)}
    unseen = {day: {} for day in days}

    together = validate_days(contract, days, trailing, unseen)

    for day, assembled in days.items():
        alone = validate_partition(
            contract, assembled.frame, day, trailing[day], assembled=assembled, unseen={}
        )
        assert together[day] == alone, day
    failed = {day: [o.name for o in outcomes if not o.passed] for day, outcomes in together.items()}
    assert failed == {
        "2019-01-01": [],
        "2019-01-02": ["value_ranges"],
        "2019-01-03": ["null_fractions", "event_time_in_partition"],
        "2019-01-04": [],
        "2019-01-05": [],
    }
