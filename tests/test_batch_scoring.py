"""score_day: batch by batch, the file a whole-table write gives; atomic on failure."""

from __future__ import annotations

import os
import threading

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.monitoring.signals import predictions_table
from driftloop.paths import DatasetPaths
from driftloop.serving.batch import (
    SCORING_WORKERS,
    ScoredDay,
    Scorer,
    balanced_batch_rows,
    prediction_threads,
    score_day,
)

DAY = "2013-01-08"


def features(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(rows)
    return pd.DataFrame(
        {
            "flight_id": [f"{DAY}-{i}" for i in range(rows)],
            "event_time": pd.date_range(DAY, periods=rows, freq="min"),
            "partition_date": DAY,
            "temp": rng.normal(size=rows),
            "carrier": rng.choice(["AA", "DL", "UA"], rows),
            "label": rng.integers(0, 2, rows).astype("float64"),
        }
    )


def by_temp(table: pa.Table, threads: int = 0) -> np.ndarray:
    return np.nan_to_num(table.column("temp").to_numpy(zero_copy_only=False)) * 0.5


def by_carrier(table: pa.Table, threads: int = 0) -> np.ndarray:
    carriers = table.column("carrier").cast(pa.string()).to_pylist()
    return np.array([{"AA": 0.1, "DL": 0.2}.get(c, 0.3) for c in carriers])


def test_batches_write_the_file_one_whole_table_gives(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    frame = features(300)
    write_parquet_atomic(frame, flights_paths.partition_file("features", DAY))
    scored = score_day(
        flights_contract,
        flights_paths,
        DAY,
        Scorer(by_temp, "3"),
        Scorer(by_carrier, "4"),
        columns=["flight_id", "event_time", "partition_date", "temp", "carrier"],
        dictionary=["carrier"],
        batch_rows=64,
    )
    champion, shadow = by_temp(pa.Table.from_pandas(frame)), by_carrier(pa.Table.from_pandas(frame))
    expected = predictions_table(flights_contract, frame, champion, "3", shadow, "4")
    written = pd.read_parquet(scored.path)
    pd.testing.assert_frame_equal(written, expected)
    assert list(written["row"]) == list(range(300))  # positions in the whole partition
    # At most 64 rows a batch, in a multiple of the two workers: 6 batches of 50 rows.
    groups = pq.ParquetFile(scored.path).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [50] * 6
    assert scored.rows == 300
    assert scored.mean(scored.prediction_sum) == pytest.approx(champion.mean())
    assert scored.mean(scored.shadow_abs_difference_sum) == pytest.approx(
        np.abs(shadow - champion).mean()
    )
    assert min(scored.read_seconds, scored.score_seconds, scored.write_seconds) > 0


def test_an_empty_partition_gets_an_empty_file_of_the_same_schema(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    table = pa.Table.from_pandas(features(10), preserve_index=False)
    full = score_day_of(flights_contract, flights_paths, table, "2013-01-09")
    empty = score_day_of(flights_contract, flights_paths, table.slice(0, 0), DAY)
    assert empty.rows == 0 and pq.read_metadata(empty.path).num_rows == 0
    assert pq.read_schema(empty.path) == pq.read_schema(full.path)


def score_day_of(contract: Contract, paths: DatasetPaths, table: pa.Table, day: str) -> ScoredDay:
    write_parquet_atomic(table, paths.partition_file("features", day))
    return score_day(contract, paths, day, Scorer(by_temp, "1"))


def test_a_failing_batch_leaves_no_file_behind(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    write_parquet_atomic(features(300), flights_paths.partition_file("features", DAY))
    calls = []

    def fails_third_time(table: pa.Table, threads: int = 0) -> np.ndarray:
        calls.append(len(table))
        if len(calls) == 3:
            raise RuntimeError("model exploded")
        return by_temp(table)

    with pytest.raises(RuntimeError, match="model exploded"):
        scorer = Scorer(fails_third_time, "1")
        score_day(flights_contract, flights_paths, DAY, scorer, batch_rows=64)
    folder = flights_paths.partition_file("predictions", DAY).parent
    assert not folder.exists() or not any(folder.iterdir())  # neither file nor temp file


def test_a_missing_partition_is_named(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    with pytest.raises(FileNotFoundError, match=f"features partition for {DAY}"):
        score_day(flights_contract, flights_paths, DAY, Scorer(by_temp, "1"))


def test_two_batches_are_scored_at_once_each_with_its_share_of_the_cores(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    write_parquet_atomic(features(300), flights_paths.partition_file("features", DAY))
    # The first two batches meet at the barrier: this fails (BrokenBarrierError) unless
    # they are in their scorers at the same time.
    both_scoring = threading.Barrier(2, timeout=10)
    calls: list[tuple[str, int]] = []

    def waits_for_the_other(table: pa.Table, threads: int = 0) -> np.ndarray:
        calls.append((threading.current_thread().name, threads))
        if len(calls) <= 2:
            both_scoring.wait()
        return by_temp(table)

    scored = score_day(
        flights_contract, flights_paths, DAY, Scorer(waits_for_the_other, "1"), batch_rows=64
    )
    assert scored.rows == 300 and len(calls) == 6
    assert {threads for _, threads in calls} == {prediction_threads()}
    assert prediction_threads() == max(1, (os.cpu_count() or 1) // SCORING_WORKERS)
    assert len({name for name, _ in calls}) == SCORING_WORKERS  # not the calling thread
    assert threading.current_thread().name not in {name for name, _ in calls}
    written = pd.read_parquet(scored.path)
    assert list(written["row"]) == list(range(300))  # in order, whatever finished first


@pytest.mark.parametrize(
    ("rows", "most", "workers", "expected"),
    [
        (1_000_000, 131_072, 2, 125_000),  # 8 batches, not 7 full and a short one
        (300, 64, 2, 50),
        (100, 64, 2, 50),  # fewer rows than two full batches: one batch each
        (10, 64, 1, 10),
        (0, 64, 2, 1),  # an empty partition still reads in batches of a valid size
        (3, 64, 4, 1),
    ],
)
def test_batches_are_at_most_the_size_asked_and_shared_evenly(
    rows: int, most: int, workers: int, expected: int
) -> None:
    size = balanced_batch_rows(rows, most, workers)
    assert size == expected and size <= most
    batches = -(-rows // size)
    assert rows == 0 or batches % workers == 0 or rows < workers
