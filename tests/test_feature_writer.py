"""Chunked writing of the features table: the same files whatever the chunk size."""

from __future__ import annotations

from datetime import date

import pandas as pd

from driftloop.data.contract import Contract
from driftloop.data.lake import days_between
from driftloop.features.definition import build_features
from driftloop.features.writer import plan_chunks, write_features
from driftloop.names import FEATURES_TABLE
from driftloop.paths import DatasetPaths
from tests.test_features import JAN, write_flights


def test_chunks_hold_at_most_max_rows_and_cover_every_day(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    write_flights(flights_contract, flights_paths, JAN, 6)
    days = days_between(JAN, date(2013, 1, 6))
    chunks = plan_chunks(flights_paths, days, max_rows=2000)
    assert [d for chunk in chunks for d in chunk] == days
    assert len(chunks) >= 3  # ~900 flights a day: two days per chunk at most
    # A day bigger than the budget still gets a chunk of its own.
    assert plan_chunks(flights_paths, days, max_rows=10) == [[d] for d in days]


def test_chunked_write_equals_one_query(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    write_flights(flights_contract, flights_paths, JAN, 12)
    days = days_between(date(2013, 1, 3), date(2013, 1, 12))
    whole = build_features(flights_contract, flights_paths, date(2013, 1, 3), date(2013, 1, 12))

    progress: list[tuple[str, int]] = []
    written = write_features(
        flights_contract,
        flights_paths,
        days,
        max_rows=2500,
        on_chunk=lambda chunk, rows: progress.append((chunk[0], rows)),
    )
    assert len(written.chunks) >= 4 and len(progress) == len(written.chunks)
    assert written.rows == len(whole) == sum(rows for _, rows in progress)
    files = [flights_paths.partition_file(FEATURES_TABLE, d) for d in days]
    chunked = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    pd.testing.assert_frame_equal(chunked, whole.reset_index(drop=True), check_exact=True)
    assert written.labelled_rows == int(whole["label"].notna().sum())
    assert written.label_mean == float(whole["label"].mean())
    for name in flights_contract.features:
        assert written.null_fraction(name) == float(whole[name].isna().mean())
