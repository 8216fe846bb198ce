"""The online feature state against the batch definition, on real flights (no server, no model).

A lake of 12 real days is written as the raw_data asset writes it. The state built from it
must give every row of the last day the rolling features `build_features` gives it; a state
built from the first 11 days only, fed the last day's departures and arrivals as events in
the order they become known, must give each flight, asked at its scheduled departure
before any later event, the same features again.
"""

from __future__ import annotations

import math
import shutil
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from serving_helpers import timeline

from benchmarks.data import real_flights, write_raw_lake
from driftloop.data.contract import Contract
from driftloop.features.definition import build_features
from driftloop.paths import DatasetPaths, dataset_paths
from driftloop.serving.event_log import EventLog
from driftloop.serving.online_state import OnlineFeatureState
from driftloop.serving.requests import RequestSchema, epoch_us, parse_events, parse_request

START = date(2013, 3, 1)
DAYS = 12


@pytest.fixture
def lake(flights_contract: Contract, flights_paths: DatasetPaths) -> list[str]:
    return write_raw_lake(flights_contract, flights_paths, real_flights(START, DAYS))


def _rolling(contract: Contract) -> list[str]:
    return [r.name for r in contract.rolling_features]


def _same(online: list, batch: pd.Series) -> list[int]:
    """Positions where an online value differs from batch (NULL = NaN), exactly."""
    wrong = []
    for i, (a, b) in enumerate(zip(online, batch.tolist(), strict=True)):
        a_null, b_null = a is None, b is None or (isinstance(b, float) and math.isnan(b))
        if a_null != b_null or (not a_null and a != b):
            wrong.append(i)
    return wrong


def _ask(state: OnlineFeatureState, schema: RequestSchema, records: list[dict]) -> dict:
    rows = parse_request({"dataframe_records": records}, schema)
    times = [epoch_us(t) for t in rows.columns[schema.contract.event_time.column]]
    return state.features(rows.columns, times)


def test_state_from_the_lake_equals_batch_on_every_row(
    flights_contract: Contract, flights_paths: DatasetPaths, lake: list[str]
) -> None:
    day = lake[-1]
    state = OnlineFeatureState(flights_contract, flights_paths)
    assert state.refresh_lake() and not state.refresh_lake()  # unchanged: nothing reloaded
    assert (state.first_day, state.last_day) == (lake[0], day)
    batch = build_features(
        flights_contract, flights_paths, date.fromisoformat(day), date.fromisoformat(day)
    )
    raw = pd.read_parquet(flights_paths.partition_file("raw", day)).set_index("flight_id")
    schema = RequestSchema.from_contract(flights_contract)
    records = [
        dict(r, flight_id=i)
        for i, r in zip(
            batch["flight_id"],
            _records(raw.loc[batch["flight_id"]].reset_index(), schema),
            strict=True,
        )
    ]
    online = _ask(state, schema, records)
    assert len(batch) > 500
    for name in _rolling(flights_contract):
        assert _same(online[name], batch[name]) == [], name
    # Counts are never NULL, means are where no value was known yet in the window.
    assert all(v is not None for v in online["carrier_flights_7d"])


def _records(raw: pd.DataFrame, schema: RequestSchema) -> list[dict]:
    from driftloop.serving.requests import raw_record

    return [raw_record(row, schema) for _, row in raw.iterrows()]


@pytest.mark.slow
def test_replayed_day_equals_batch_before_it_lands(
    flights_contract: Contract, flights_paths: DatasetPaths, lake: list[str], tmp_path: Path
) -> None:
    day = lake[-1]
    # The server's lake: every day but the last.
    served = dataset_paths("flights", tmp_path / "served")
    for earlier in lake[:-1]:
        target = served.partition_file("raw", earlier)
        target.parent.mkdir(parents=True)
        shutil.copy(flights_paths.partition_file("raw", earlier), target)
    log = EventLog(tmp_path / "events.jsonl")
    state = OnlineFeatureState(flights_contract, served, event_log=log)
    other_worker = OnlineFeatureState(flights_contract, served, event_log=EventLog(log.path))
    state.refresh_lake()
    other_worker.refresh_lake()

    batch = build_features(
        flights_contract, flights_paths, date.fromisoformat(day), date.fromisoformat(day)
    ).set_index("flight_id")
    raw = pd.read_parquet(flights_paths.partition_file("raw", day))
    schema = RequestSchema.from_contract(flights_contract)
    answers: dict[str, dict] = {}
    for kind, payload in timeline(raw, flights_contract):
        if kind == "event":
            log.append(parse_events({"dataframe_records": [payload]}, flights_contract, 10))
            continue
        # Asked of the worker that did not log the events: it reads them from the log.
        other_worker.catch_up()
        online = _ask(other_worker, schema, [payload])
        answers[payload["flight_id"]] = {name: values[0] for name, values in online.items()}
    assert len(answers) == len(raw) > 500
    frame = pd.DataFrame.from_dict(answers, orient="index")
    expected = batch.loc[frame.index]
    for name in _rolling(flights_contract):
        column = [None if pd.isna(v) else v for v in frame[name].tolist()]
        assert _same(column, expected[name]) == [], name
    other_worker.catch_up()  # the arrivals after the day's last departure
    assert other_worker.event_rows == len(raw)

    # The day lands: the stored rows replace the events, the features stay the same.
    target = served.partition_file("raw", day)
    target.parent.mkdir(parents=True)
    shutil.copy(flights_paths.partition_file("raw", day), target)
    assert other_worker.refresh_lake()
    assert other_worker.event_rows == 0 and other_worker.last_day == day
    again = _ask(other_worker, schema, _records(raw, schema))
    expected = batch.loc[raw["flight_id"]]
    for name in _rolling(flights_contract):
        assert _same(again[name], expected[name]) == [], name
    # An event about a stored row is counted and ignored: the lake wins.
    other_worker.apply_events([{"flight_id": raw["flight_id"].iloc[0], "dep_delay": 999.0}])
    assert other_worker.events_ignored == 1 and other_worker.event_rows == 0


def test_days_before_the_history_are_refused(
    flights_contract: Contract, flights_paths: DatasetPaths, lake: list[str]
) -> None:
    state = OnlineFeatureState(flights_contract, flights_paths, history_days=5)
    state.refresh_lake()
    assert state.first_day == lake[-5]
    earliest = date.fromisoformat(lake[-5]) + timedelta(days=state.lookback)
    assert state.servable(earliest.isoformat()) is None
    reason = state.servable((earliest - timedelta(days=1)).isoformat())
    assert reason is not None and "before the online history" in reason
