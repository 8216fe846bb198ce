"""Ingestion from the landing zone: real files in, staged pieces, archive and quarantine out."""

from __future__ import annotations

import multiprocessing
import shutil
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from driftloop.data.contract import Contract
from driftloop.data.flights_source import flights_between
from driftloop.data.ingest import (
    SOURCE_FILE,
    assemble_partition,
    file_digest,
    file_key,
    ingest_landing,
    landing_files,
)
from driftloop.paths import DatasetPaths

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03"]


@pytest.fixture(scope="module")
def flights3() -> pd.DataFrame:
    return flights_between(date(2013, 1, 1), 3)


def _day(frame: pd.DataFrame, day: str) -> pd.DataFrame:
    return frame[frame["scheduled_departure"].dt.strftime("%Y-%m-%d") == day].reset_index(drop=True)


def _land(paths: DatasetPaths, frame: pd.DataFrame, name: str) -> Path:
    paths.landing.mkdir(parents=True, exist_ok=True)
    target = paths.landing / name
    if name.endswith(".csv"):
        frame.to_csv(target, index=False)
    else:
        frame.to_parquet(target, index=False)
    return target


def _reason_files(paths: DatasetPaths) -> dict[str, str]:
    return {p.name: p.read_text() for p in paths.quarantine.glob("*.reason.txt")}


def test_helpers_list_landing_files_and_hash(flights_paths: DatasetPaths, flights3) -> None:
    assert landing_files(flights_paths) == []
    good = _land(flights_paths, flights3.head(5), "a.csv")
    _land(flights_paths, flights3.head(5), "b.parquet")
    (flights_paths.landing / ".c.csv.tmp").write_text("in progress")
    (flights_paths.landing / "notes.txt").write_text("not data")
    assert [p.name for p in landing_files(flights_paths)] == ["a.csv", "b.parquet"]
    digest = file_digest(good)
    assert len(digest) == 16 and digest == file_digest(good)
    assert digest != file_digest(flights_paths.landing / "b.parquet")


def test_good_csv_is_ingested_into_its_day(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    day1 = _day(flights3, DAYS[0])
    landed = _land(flights_paths, day1, "flights_0101.csv")
    digest = file_digest(landed)

    report = ingest_landing(flights_contract, flights_paths)

    assert report.ingested == ["flights_0101.csv"]
    assert report.days == [DAYS[0]]
    assert report.rows_ingested == {"flights_0101.csv": len(day1)}
    assert not report.quarantined and not report.quarantined_rows
    assert not landed.exists()
    assert (flights_paths.archive / f"{digest}__flights_0101.csv").exists()
    assert (flights_paths.staged / f"date={DAYS[0]}" / f"{file_key(landed.name)}.parquet").exists()

    raw = assemble_partition(flights_contract, flights_paths, DAYS[0])
    assert len(raw) == len(day1)
    assert list(raw.columns) == [*flights_contract.columns, SOURCE_FILE]
    assert set(raw[SOURCE_FILE]) == {"flights_0101.csv"}
    assert raw["scheduled_departure"].is_monotonic_increasing
    # Values survive the CSV round trip with their types.
    expected = day1.set_index("flight_id")
    got = raw.set_index("flight_id").loc[expected.index]
    pd.testing.assert_series_equal(
        got["distance"], expected["distance"].astype("float64"), check_names=False
    )
    assert (got["scheduled_departure"] == expected["scheduled_departure"]).all()
    assert got["tailnum"].isna().sum() == expected["tailnum"].isna().sum()


def test_a_file_spanning_three_days_fills_three_days(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    _land(flights_paths, flights3, "three_days.parquet")
    report = ingest_landing(flights_contract, flights_paths)
    assert report.days == DAYS
    for day in DAYS:
        raw = assemble_partition(flights_contract, flights_paths, day)
        assert len(raw) == len(_day(flights3, day)) > 500
        assert (raw["scheduled_departure"].dt.strftime("%Y-%m-%d") == day).all()


def test_relanding_the_same_file_changes_nothing(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    landed = _land(flights_paths, _day(flights3, DAYS[0]), "day1.csv")
    copy = landed.with_name("keep.bin")
    shutil.copy(landed, copy)
    ingest_landing(flights_contract, flights_paths)
    staged_before = {p: p.stat().st_mtime_ns for p in flights_paths.staged.rglob("*.parquet")}
    archive_before = sorted(p.name for p in flights_paths.archive.iterdir())

    # The same bytes again, once under the same name and once under another.
    shutil.copy(copy, landed)
    shutil.copy(copy, flights_paths.landing / "day1_resent.csv")
    report = ingest_landing(flights_contract, flights_paths)

    assert sorted(report.skipped) == ["day1.csv", "day1_resent.csv"]
    assert report.ingested == [] and report.days == []
    assert landing_files(flights_paths) == []
    staged_after = {p: p.stat().st_mtime_ns for p in flights_paths.staged.rglob("*.parquet")}
    assert staged_after == staged_before
    assert sorted(p.name for p in flights_paths.archive.iterdir()) == archive_before


def test_bad_files_are_quarantined_beside_a_good_one(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    day1, day2 = _day(flights3, DAYS[0]), _day(flights3, DAYS[1])
    _land(flights_paths, day1, "good.csv")
    flights_paths.landing.joinpath("corrupt.parquet").write_bytes(b"PAR1 this is not parquet")
    flights_paths.landing.joinpath("empty.csv").write_text(",".join(day1.columns) + "\n")
    flights_paths.landing.joinpath("zero.csv").write_text("")
    _land(flights_paths, day2.drop(columns=["carrier"]), "no_carrier.csv")
    wrong_type = day2.head(20).copy()
    wrong_type["distance"] = "far"
    _land(flights_paths, wrong_type, "wrong_type.csv")
    # A few rows out of range: those rows go to quarantine, the rest is ingested.
    some_bad = day2.copy()
    some_bad.loc[:4, "distance"] = 99999
    _land(flights_paths, some_bad, "some_bad.csv")
    # Most rows out of range: the whole file goes.
    mostly_bad = _day(flights3, DAYS[2]).copy()
    mostly_bad["origin"] = "XXX"
    _land(flights_paths, mostly_bad, "mostly_bad.parquet")

    report = ingest_landing(flights_contract, flights_paths)

    assert sorted(report.ingested) == ["good.csv", "some_bad.csv"]
    assert report.days == DAYS[:2]
    assert set(report.quarantined) == {
        "corrupt.parquet",
        "empty.csv",
        "zero.csv",
        "no_carrier.csv",
        "wrong_type.csv",
        "mostly_bad.parquet",
    }
    assert "unreadable" in report.quarantined["corrupt.parquet"]
    assert "empty" in report.quarantined["empty.csv"]
    assert "empty" in report.quarantined["zero.csv"]
    assert "carrier" in report.quarantined["no_carrier.csv"]
    assert "distance" in report.quarantined["wrong_type.csv"]
    assert report.quarantined_rows == {"some_bad.csv": 5}
    assert landing_files(flights_paths) == []

    reasons = _reason_files(flights_paths)
    by_file = {t.splitlines()[0].removeprefix("landed file: "): t for t in reasons.values()}
    assert set(by_file) == set(report.quarantined) | {"some_bad.csv"}
    assert "missing required column(s) ['carrier']" in by_file["no_carrier.csv"]
    assert "column 'distance' is not castable to numeric" in by_file["wrong_type.csv"]
    assert "far" in by_file["wrong_type.csv"]
    assert "column 'distance' rule max=6000: 5 row(s), e.g. 99999" in by_file["some_bad.csv"]
    assert "column 'origin' rule allowed" in by_file["mostly_bad.parquet"]
    assert "XXX" in by_file["mostly_bad.parquet"]
    assert "max_bad_row_fraction=0.2" in by_file["mostly_bad.parquet"]

    # Whole files were moved, byte for byte, under their hash; bad rows kept with a reason.
    for name in report.quarantined:
        stem, suffix = name.rsplit(".", 1)
        assert len(list(flights_paths.quarantine.glob(f"{stem}.*.{suffix}"))) == 1, name
    corrupt = next(flights_paths.quarantine.glob("corrupt.*.parquet"))
    assert corrupt.read_bytes() == b"PAR1 this is not parquet"
    rows = pd.read_parquet(next(flights_paths.quarantine.glob("some_bad.*.rows.parquet")))
    assert len(rows) == 5
    assert rows["_reason"].str.contains("column 'distance' rule max=6000: value 99999").all()

    raw2 = assemble_partition(flights_contract, flights_paths, DAYS[1])
    assert len(raw2) == len(day2) - 5 and raw2["distance"].max() <= 6000
    assert len(assemble_partition(flights_contract, flights_paths, DAYS[0])) == len(day1)


def test_row_rules_cover_nulls_and_unparseable_event_times(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    day1 = _day(flights3, DAYS[0]).astype({"scheduled_departure": str})
    day1.loc[0, "scheduled_departure"] = "not a time"
    day1.loc[1, "scheduled_departure"] = None
    day1.loc[2, "dest"] = None
    day1.loc[3, "flight"] = "12a"
    _land(flights_paths, day1, "rules.csv")

    report = ingest_landing(flights_contract, flights_paths)

    assert report.quarantined_rows == {"rules.csv": 4}
    rows = pd.read_parquet(next(flights_paths.quarantine.glob("rules.*.rows.parquet")))
    text = " / ".join(rows["_reason"])
    assert "column 'scheduled_departure' not castable to event time: value not a time" in text
    assert "column 'scheduled_departure' event time is null" in text
    assert "column 'dest' rule nullable=false" in text
    assert "column 'flight' not castable to numeric: value 12a" in text
    assert len(assemble_partition(flights_contract, flights_paths, DAYS[0])) == len(day1) - 4


def test_tz_aware_times_are_converted_to_local_time(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    day1 = _day(flights3, DAYS[0]).head(50).copy()
    local = day1["scheduled_departure"]
    utc = local.dt.tz_localize("America/New_York").dt.tz_convert("UTC")
    as_parquet = day1.assign(scheduled_departure=utc)
    as_csv = day1.assign(scheduled_departure=utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    as_csv["flight_id"] = as_csv["flight_id"] + "-csv"
    _land(flights_paths, as_parquet, "utc.parquet")
    _land(flights_paths, as_csv, "utc.csv")

    ingest_landing(flights_contract, flights_paths)

    raw = assemble_partition(flights_contract, flights_paths, DAYS[0])
    assert len(raw) == 100
    for suffix in ("", "-csv"):
        got = raw.set_index("flight_id").loc[day1["flight_id"] + suffix, "scheduled_departure"]
        assert list(got) == list(local)


def test_assemble_keeps_stable_dtypes(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    day1 = _day(flights3, DAYS[0])
    _land(flights_paths, day1, "first.parquet")
    ingest_landing(flights_contract, flights_paths)

    raw = assemble_partition(flights_contract, flights_paths, DAYS[0])
    assert len(raw) == len(day1) and raw["flight_id"].is_unique
    empty = assemble_partition(flights_contract, flights_paths, "2013-01-09")
    assert empty.empty
    assert empty.dtypes.to_dict() == raw.dtypes.to_dict()
    assert str(raw["scheduled_departure"].dtype) == "datetime64[ns]"
    assert str(raw["distance"].dtype) == "float64"
    piece = next((flights_paths.staged / f"date={DAYS[0]}").glob("*.parquet"))
    schema = pq.read_schema(piece)
    assert str(schema.field("scheduled_departure").type) == "timestamp[us]"
    assert str(schema.field("carrier").type) == "string"


def _ingest_in_child(contract: Contract, paths: DatasetPaths) -> None:
    ingest_landing(contract, paths)


def test_two_processes_ingesting_at_once_agree(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    names = []
    for day in DAYS:
        frame = _day(flights3, day)
        for part, chunk in enumerate((frame.iloc[::2], frame.iloc[1::2])):
            name = f"{day}_{part}.{'csv' if part else 'parquet'}"
            _land(flights_paths, chunk, name)
            names.append(name)
    _land(flights_paths, pd.DataFrame({"flight_id": []}), "broken.csv")

    context = multiprocessing.get_context("fork")
    # fork: the children get the contract as it is, no pickling round trip.
    args = (flights_contract, flights_paths)
    workers = [context.Process(target=_ingest_in_child, args=args) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]

    assert landing_files(flights_paths) == []
    archived = sorted(p.name.split("__", 1)[1] for p in flights_paths.archive.iterdir())
    assert archived == sorted(names)
    assert len(list(flights_paths.quarantine.glob("broken.*.csv"))) == 1
    assert len(list(flights_paths.quarantine.glob("*.reason.txt"))) == 1
    leftovers = [p for p in flights_paths.root.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    for day in DAYS:
        raw = assemble_partition(flights_contract, flights_paths, day)
        assert len(raw) == len(_day(flights3, day))


def test_rows_outside_the_contracts_partitions_are_quarantined(flights_contract, flights_paths):
    """A row dated before the first partition (as the taxi data's 2008 pickup) is set aside."""
    from datetime import date

    from driftloop.data.flights_source import flights_between
    from driftloop.data.ingest import ingest_landing

    frame = flights_between(date(2013, 1, 1), 1).head(50).copy()
    frame.loc[0, "scheduled_departure"] = frame.loc[0, "scheduled_departure"].replace(year=2008)
    flights_paths.landing.mkdir(parents=True)
    frame.to_parquet(flights_paths.landing / "mixed.parquet", index=False)

    report = ingest_landing(flights_contract, flights_paths)

    assert report.quarantined_rows == {"mixed.parquet": 1}
    assert report.days == ["2013-01-01"]
    reason = next(flights_paths.quarantine.glob("*.reason.txt")).read_text()
    assert "mixed.parquet" in reason and "scheduled_departure" in reason
    assert "partitions" in reason and "2008" in reason


def test_a_correction_replaces_the_files_rows_in_every_day_it_filled(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    from driftloop.data.assembly import assemble_day

    two_days = flights3[flights3["scheduled_departure"] < DAYS[2]]
    _land(flights_paths, two_days, "batch.csv")
    _land(flights_paths, _day(flights3, DAYS[1]).head(5), "other.csv")  # exact duplicates
    ingest_landing(flights_contract, flights_paths)
    day2 = assemble_day(flights_contract, flights_paths, DAYS[1])
    assert day2.exact_duplicates == 5 and day2.balanced and day2.conflicts.empty

    # Corrected: only day 2 now, delays changed. Day 1 loses the file's rows entirely.
    fixed = _day(flights3, DAYS[1]).assign(arr_delay=7.0)
    _land(flights_paths, fixed, "batch.csv")
    report = ingest_landing(flights_contract, flights_paths)

    assert list(report.corrected) == ["batch.csv"]
    assert report.days == DAYS[:2]
    assert assemble_partition(flights_contract, flights_paths, DAYS[0]).empty
    day2 = assemble_day(flights_contract, flights_paths, DAYS[1])
    assert (day2.frame["arr_delay"] == 7.0).all()
    # other.csv's five rows now differ from batch.csv's: conflicts, all versions set aside.
    assert len(day2.conflicts) == 10 and day2.rows_stored == len(fixed) - 5
    assert day2.rows_landed == len(fixed) + 5 and day2.balanced

    # A correction that is itself unusable leaves the rows as they were.
    (flights_paths.landing / "batch.csv").write_text("")
    report = ingest_landing(flights_contract, flights_paths)
    assert "batch.csv" in report.quarantined
    assert any(
        "earlier version of this file name stay" in text
        for text in (_reason_files(flights_paths).values())
    )
    assert len(assemble_partition(flights_contract, flights_paths, DAYS[1])) == len(fixed) - 5


def test_limits_quarantine_without_reading_and_bound_the_reason(
    flights_contract: Contract, flights_paths: DatasetPaths, flights3
) -> None:
    from driftloop.data.limits import IngestLimits

    limits = IngestLimits(max_file_bytes=200_000, max_header_bytes=4096, max_columns=50)
    _land(flights_paths, pd.concat([_day(flights3, DAYS[0])] * 3), "big.csv")
    flights_paths.landing.joinpath("long.csv").write_text("x" * 10_000 + "\n1\n")
    flights_paths.landing.joinpath("wide.csv").write_text(",".join("c" * 5 for _ in range(60)))
    wide = pd.DataFrame({f"c{i}": [1.0] for i in range(60)})
    wide.to_parquet(flights_paths.landing / "wide.parquet")
    _land(flights_paths, _day(flights3, DAYS[1]), "fine.csv")

    report = ingest_landing(flights_contract, flights_paths, limits=limits)

    assert report.ingested == ["fine.csv"]
    assert "file too large" in report.quarantined["big.csv"]
    assert "header line longer than 4096 bytes" in report.quarantined["long.csv"]
    assert "too wide: 60 columns" in report.quarantined["wide.csv"]
    assert "too wide: 60 columns" in report.quarantined["wide.parquet"]
    assert all(len(text) < 1500 for text in _reason_files(flights_paths).values())
