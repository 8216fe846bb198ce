"""Features: schema, point-in-time correctness, rolling statistics, the Dagster asset."""

from __future__ import annotations

import io
import textwrap
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, AssetsDefinition, DagsterInstance, materialize

from assets.features import build as build_features_asset
from driftloop.data.contract import ColumnType, Contract, load_contract
from driftloop.data.flights_source import flights_between
from driftloop.data.lake import blocked_marker, write_parquet_atomic
from driftloop.features.definition import build_features, feature_sql, lookback_days
from driftloop.paths import DatasetPaths, dataset_paths
from resources.lake import LakeResource

JAN = date(2013, 1, 1)


# --- helpers -------------------------------------------------------------------------------


def write_raw(contract: Contract, paths: DatasetPaths, frame: pd.DataFrame) -> list[str]:
    """Raw partitions as ingestion writes them: contract columns cast, plus _source_file."""
    cast = pd.DataFrame(index=frame.index)
    for name, column in contract.columns.items():
        values = frame[name]
        if column.type == ColumnType.numeric:
            cast[name] = values.astype("float64")
        elif column.type == ColumnType.categorical:
            cast[name] = values.astype("string")
        elif column.type == ColumnType.boolean:
            cast[name] = values.astype("bool")
        else:
            cast[name] = pd.to_datetime(values)
    day_of_row = cast[contract.event_time.column].dt.strftime("%Y-%m-%d")
    for day, rows in cast.groupby(day_of_row):
        rows = rows.assign(_source_file=f"{contract.name}_{day}.csv")
        write_parquet_atomic(rows.reset_index(drop=True), paths.partition_file("raw", day))
    return sorted(day_of_row.unique())


def write_flights(contract: Contract, paths: DatasetPaths, start: date, days: int) -> pd.DataFrame:
    frame = flights_between(start, days)
    write_raw(contract, paths, frame)
    return frame


def toy_contract(tmp_path: Path, body: str, name: str = "toy") -> Contract:
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(body))
    return load_contract(path)


TOY = """\
    name: toy
    event_time: {column: ts, timezone: UTC}
    id_columns: [id]
    target: {column: y}
    task: binary
    label_delay: 2h
    partitions: {start: 2013-03-01}
    columns:
      id: {type: categorical}
      ts: {type: timestamp}
      grp: {type: categorical}
      y: {type: numeric}
      x: {type: numeric}
      flag: {type: boolean}
    extra_features:
      x2: x * 2
    rolling_features:
      - {name: rate_6h, group_by: grp, window: 6h}
      - {name: n_6h, group_by: grp, window: 6h, statistic: count}
    features: [x, grp, flag, x2, rate_6h, n_6h]
"""


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue()


# --- schema --------------------------------------------------------------------------------


def test_schema_types_and_order(flights_contract: Contract, flights_paths: DatasetPaths) -> None:
    raw = write_flights(flights_contract, flights_paths, JAN, 12)
    out = build_features(flights_contract, flights_paths, date(2013, 1, 10), date(2013, 1, 12))

    expected = ["flight_id", "event_time", "partition_date", *flights_contract.features, "label"]
    assert list(out.columns) == expected
    in_range = raw[raw["scheduled_departure"] >= pd.Timestamp("2013-01-10")]
    assert len(out) == len(in_range)
    assert sorted(out["partition_date"].unique()) == ["2013-01-10", "2013-01-11", "2013-01-12"]
    assert pd.api.types.is_datetime64_dtype(out["event_time"])
    for name in flights_contract.features:
        if name in flights_contract.categorical_features:
            assert out[name].map(type).isin([str, type(None)]).all(), name
        else:
            assert out[name].dtype == np.float64, name
    assert out["label"].dtype == np.float64
    # Deterministic order: event time, then ids.
    assert out.equals(out.sort_values(["event_time", "flight_id"]).reset_index(drop=True))
    # The label is the target expression; NULL (cancelled flights) stays NULL.
    truth = in_range.set_index("flight_id")["arr_delay"]
    label = out.set_index("flight_id")["label"]
    assert label[truth.isna()].isna().all()
    known = truth.notna()
    assert (label[known] == (truth[known] > 15).astype(float)).all()
    # 9 lookback days: the first target day already has a full week of history.
    assert lookback_days(flights_contract) == 9
    assert out["carrier_flights_7d"].min() > 0
    assert "read_parquet" in out.attrs["sql"]


# --- point-in-time correctness -------------------------------------------------------------


def test_future_day_cannot_change_earlier_features(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    raw = write_flights(flights_contract, flights_paths, JAN, 12)
    start, end = date(2013, 1, 2), date(2013, 1, 12)
    before = build_features(flights_contract, flights_paths, start, end)

    # Rewrite the last day: every row changes (labels flipped, groups, weather, times), a
    # few rows go and new ones appear earlier on that same day.
    future = raw[raw["scheduled_departure"] >= pd.Timestamp(end)].copy()
    future["arr_delay"] = np.where(future["arr_delay"].fillna(0) > 15, -30.0, 300.0)
    future["dep_delay"] = 999.0
    future["carrier"] = future["carrier"].map(lambda c: "UA" if c != "UA" else "AA")
    future["origin"] = future["origin"].map({"EWR": "JFK", "JFK": "LGA", "LGA": "EWR"})
    future["dest"] = "ORD"
    future["temp"] = -10.0
    future["distance"] = future["distance"] + 1
    future["scheduled_departure"] = (
        pd.Timestamp(end) + (future["scheduled_departure"] - pd.Timestamp(end)) / 3
    )
    extra = future.head(500).assign(flight_id=lambda f: f["flight_id"] + "-new")
    perturbed = pd.concat([future.iloc[50:], extra])
    write_raw(flights_contract, flights_paths, perturbed)
    after = build_features(flights_contract, flights_paths, start, end)

    earlier_before = before[before["partition_date"] < end.isoformat()]
    earlier_after = after[after["partition_date"] < end.isoformat()]
    assert len(earlier_before) > 5000
    pd.testing.assert_frame_equal(
        earlier_before.reset_index(drop=True),
        earlier_after.reset_index(drop=True),
        check_exact=True,
    )
    assert parquet_bytes(earlier_before) == parquet_bytes(earlier_after)
    # The perturbation did reach the future day itself (the test can fail).
    last_before = before[before["partition_date"] == end.isoformat()]
    last_after = after[after["partition_date"] == end.isoformat()]
    assert len(last_after) == len(last_before) - 50 + 500
    assert not last_after["label"].equals(last_before["label"])


def _toy_rows(seed: int = 7, n: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    base = pd.Timestamp("2013-03-01")
    # Whole quarter hours over three days: many ties and rows exactly on window bounds.
    offsets = pd.to_timedelta(rng.integers(0, 3 * 24 * 4, n) * 15, unit="m")
    y = rng.integers(0, 2, n).astype(float)
    y[rng.random(n) < 0.2] = np.nan
    grp = rng.choice(["a", "b", "c"], n).astype(object)
    grp[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "id": [f"r{i:04d}" for i in range(n)],
            "ts": base + offsets,
            "grp": grp,
            "y": y,
            "x": rng.normal(size=n),
            "flag": rng.random(n) < 0.3,
        }
    )


def _brute_force(rows: pd.DataFrame, delay: timedelta, window: timedelta) -> pd.DataFrame:
    """Rolling statistics of the contract definition, one row at a time."""
    rate, count = [], []
    for _, row in rows.iterrows():
        if row["grp"] is None:
            rate.append(np.nan)
            count.append(np.nan)
            continue
        t = row["ts"]
        past = rows[
            (rows["grp"] == row["grp"])
            & (rows["ts"] >= t - delay - window)
            & (rows["ts"] < t - delay)
        ]
        labelled = past["y"].dropna()
        rate.append(labelled.mean() if len(labelled) else np.nan)
        count.append(float(len(past)))
    return pd.DataFrame({"id": rows["id"], "rate_6h": rate, "n_6h": count})


def test_rolling_statistics_match_brute_force(tmp_path: Path, data_root: Path) -> None:
    contract = toy_contract(tmp_path, TOY)
    paths = dataset_paths("toy", data_root)
    rows = _toy_rows()
    write_raw(contract, paths, rows)

    out = build_features(contract, paths, date(2013, 3, 2), date(2013, 3, 3))
    expected = _brute_force(rows, timedelta(hours=2), timedelta(hours=6))
    merged = out.merge(expected, on="id", suffixes=("", "_expected"))
    assert len(merged) == (rows["ts"] >= pd.Timestamp("2013-03-02")).sum() > 200
    np.testing.assert_allclose(merged["rate_6h"], merged["rate_6h_expected"], rtol=1e-12)
    np.testing.assert_array_equal(merged["n_6h"], merged["n_6h_expected"])
    assert merged["rate_6h"].notna().sum() > 100
    # Other feature kinds: extra SQL, boolean as 0/1, categorical as text.
    source = rows.set_index("id").loc[merged["id"]]
    np.testing.assert_allclose(merged["x2"], source["x"].to_numpy() * 2)
    assert set(merged["flag"]) <= {0.0, 1.0}
    assert (merged["flag"].to_numpy() == source["flag"].to_numpy().astype(float)).all()


def test_label_known_exactly_at_the_boundary_is_not_used(tmp_path: Path, data_root: Path) -> None:
    """Delay 2h, window 6h: rows in [t - 8h, t - 2h) count; t - 2h itself does not."""
    contract = toy_contract(tmp_path, TOY)
    paths = dataset_paths("toy", data_root)
    at = pd.Timestamp("2013-03-02 10:00")
    us = pd.Timedelta(microseconds=1)
    rows = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "ts": [
                at,
                at + pd.Timedelta(hours=2),  # a's label becomes known exactly now: unused
                at + pd.Timedelta(hours=2) + us,  # one microsecond later: a counts
                at + pd.Timedelta(hours=8),  # a is exactly at the window start: included
                at + pd.Timedelta(hours=8) + us,  # a has left the window
            ],
            "grp": ["g"] * 5,
            "y": [1.0, 0.0, np.nan, 1.0, 1.0],
            "x": [0.0] * 5,
            "flag": [False] * 5,
        }
    )
    write_raw(contract, paths, rows)
    out = build_features(contract, paths, date(2013, 3, 2), date(2013, 3, 2)).set_index("id")
    assert np.isnan(out.loc["a", "rate_6h"]) and out.loc["a", "n_6h"] == 0
    assert np.isnan(out.loc["b", "rate_6h"]) and out.loc["b", "n_6h"] == 0
    assert out.loc["c", "rate_6h"] == 1.0 and out.loc["c", "n_6h"] == 1
    assert out.loc["d", "rate_6h"] == 0.5 and out.loc["d", "n_6h"] == 3  # a, b, c (c unlabelled)
    assert out.loc["e", "rate_6h"] == 0.0 and out.loc["e", "n_6h"] == 2  # b, c


# --- blocked and missing partitions --------------------------------------------------------


def test_blocked_target_day_raises(flights_contract: Contract, flights_paths: DatasetPaths) -> None:
    write_flights(flights_contract, flights_paths, JAN, 5)
    marker = blocked_marker(flights_paths.table("raw"), "2013-01-04")
    marker.write_text('{"failed": ["arr_delay_in_range"]}')
    with pytest.raises(ValueError, match=r"2013-01-04 failed blocking checks"):
        build_features(flights_contract, flights_paths, date(2013, 1, 3), date(2013, 1, 5))
    # As a lookback day it is skipped with a warning, and its rows are not used.
    with pytest.warns(UserWarning, match="skipping blocked lookback raw partition"):
        out = build_features(flights_contract, flights_paths, date(2013, 1, 5), date(2013, 1, 5))
    assert out.attrs["skipped_lookback_days"] == ["2013-01-04"]
    assert "date=2013-01-04" not in out.attrs["sql"]
    assert "date=2013-01-03" in out.attrs["sql"]


def test_no_raw_files_gives_an_empty_table(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    out = build_features(flights_contract, flights_paths, JAN, JAN)
    assert len(out) == 0
    assert list(out.columns)[-1] == "label"


# --- online rows through the same query ----------------------------------------------------


def test_extra_rows_get_the_same_features(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    raw = write_flights(flights_contract, flights_paths, JAN, 12)
    day = date(2013, 1, 12)
    stored = build_features(flights_contract, flights_paths, day, day).set_index("flight_id")
    # An online request: a copy of a known flight, no outcome columns, time zone aware.
    original = raw[raw["scheduled_departure"] >= pd.Timestamp(day)].iloc[100]
    request = original.to_frame().T.drop(columns=["arr_delay", "dep_delay"]).infer_objects()
    request["flight_id"] = "request-1"
    request["scheduled_departure"] = (
        pd.Timestamp(original["scheduled_departure"])
        .tz_localize("America/New_York")
        .tz_convert("UTC")
    )
    out = build_features(flights_contract, flights_paths, day, day, extra_rows=request)
    assert len(out) == len(stored) + 1
    served = out.set_index("flight_id").loc["request-1"]
    assert served["event_time"] == original["scheduled_departure"]
    assert np.isnan(served["label"])
    features = flights_contract.features
    pd.testing.assert_series_equal(
        served[features], stored.loc[original["flight_id"], features], check_names=False
    )
    # A request for a day outside [start, end] is still returned.
    later = request.assign(
        flight_id="request-2",
        scheduled_departure=request["scheduled_departure"] + pd.Timedelta(days=3),
    )
    out = build_features(flights_contract, flights_paths, day, day, extra_rows=later)
    assert "request-2" in set(out["flight_id"])


# --- a regression contract -----------------------------------------------------------------

REGRESSION = """\
    name: delays
    event_time: {column: scheduled_departure, timezone: America/New_York}
    id_columns: [flight_id]
    target: {column: arr_delay}
    task: regression
    label_delay: 12h
    partitions: {start: 2013-01-01}
    columns:
      flight_id: {type: categorical, nullable: false}
      scheduled_departure: {type: timestamp, nullable: false}
      origin: {type: categorical}
      distance: {type: numeric}
      arr_delay: {type: numeric}
      long_haul: {type: boolean}
    extra_features:
      hour: hour(scheduled_departure)
    rolling_features:
      - {name: origin_mean_delay_2d, group_by: origin, window: 2d}
      - {name: origin_flights_1d, group_by: origin, window: 1d, statistic: count}
    features: [hour, origin, distance, long_haul, origin_mean_delay_2d, origin_flights_1d]
"""


def test_regression_contract(tmp_path: Path, data_root: Path) -> None:
    contract = toy_contract(tmp_path, REGRESSION, name="delays")
    paths = dataset_paths("delays", data_root)
    raw = flights_between(JAN, 6).assign(long_haul=lambda f: f["distance"] > 1000)
    write_raw(contract, paths, raw)
    assert lookback_days(contract) == 4

    out = build_features(contract, paths, date(2013, 1, 5), date(2013, 1, 6))
    expected = ["flight_id", "event_time", "partition_date", *contract.features, "label"]
    assert list(out.columns) == expected
    in_range = raw[raw["scheduled_departure"] >= pd.Timestamp("2013-01-05")].set_index("flight_id")
    assert len(out) == len(in_range)
    out = out.set_index("flight_id")
    np.testing.assert_array_equal(out["label"], in_range.loc[out.index, "arr_delay"])
    np.testing.assert_array_equal(out["long_haul"], in_range.loc[out.index, "long_haul"] * 1.0)
    # A few rows against a direct pandas computation of the rolling mean delay.
    for flight_id in out.index[::997]:
        row = out.loc[flight_id]
        t = row["event_time"]
        past = raw[
            (raw["origin"] == row["origin"])
            & (raw["scheduled_departure"] >= t - pd.Timedelta(hours=12) - pd.Timedelta(days=2))
            & (raw["scheduled_departure"] < t - pd.Timedelta(hours=12))
        ]
        assert row["origin_mean_delay_2d"] == pytest.approx(past["arr_delay"].mean(), rel=1e-9)


def test_feature_sql_is_one_query(flights_contract: Contract, tmp_path: Path) -> None:
    sql = feature_sql(flights_contract, [tmp_path / "a.parquet"], JAN, JAN)
    assert sql.count("read_parquet") == 1
    # One prefix-sum table per source (group, value, known-at), not per feature: the
    # flights' eight rolling features aggregate five sources.
    assert sql.count("ROWS UNBOUNDED PRECEDING") == 5
    # Totals known before t - 7d (in microseconds) are subtracted from those before t.
    assert "q.__t_us - 604800000000 >" in sql
    assert "__t_us + 86400000000" in sql  # known one label delay after the event


# --- the Dagster asset ---------------------------------------------------------------------


def _asset(contract: Contract) -> AssetsDefinition:
    [asset] = build_features_asset(contract).assets
    assert asset.key == AssetKey([contract.name, "features"])
    return asset


def test_asset_one_partition_and_a_range(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    data_root: Path,
    dagster_instance: DagsterInstance,
) -> None:
    write_flights(flights_contract, flights_paths, JAN, 12)
    asset = _asset(flights_contract)
    resources = {"lake": LakeResource(data_dir=str(data_root))}

    result = materialize(
        [asset], instance=dagster_instance, resources=resources, partition_key="2013-01-10"
    )
    assert result.success
    written = pd.read_parquet(flights_paths.partition_file("features", "2013-01-10"))
    expected = build_features(flights_contract, flights_paths, date(2013, 1, 10), date(2013, 1, 10))
    pd.testing.assert_frame_equal(written, expected, check_exact=True)
    [event] = result.asset_materializations_for_node(asset.op.name)
    metadata = event.metadata
    assert metadata["rows"].value == len(expected)
    assert 0 < metadata["label_rate"].value < 1
    assert "```sql" in metadata["sql"].value
    assert len(metadata["null_fraction"].value.records) == len(flights_contract.features)
    assert metadata["path"].value.endswith("date=2013-01-10/data.parquet")

    tags = {
        "dagster/asset_partition_range_start": "2013-01-10",
        "dagster/asset_partition_range_end": "2013-01-12",
    }
    result = materialize([asset], instance=dagster_instance, resources=resources, tags=tags)
    assert result.success
    expected = build_features(flights_contract, flights_paths, date(2013, 1, 10), date(2013, 1, 12))
    for day in ("2013-01-10", "2013-01-11", "2013-01-12"):
        written = pd.read_parquet(flights_paths.partition_file("features", day))
        assert (written["partition_date"] == day).all() and len(written) > 500
        pd.testing.assert_frame_equal(
            written,
            expected[expected["partition_date"] == day].reset_index(drop=True),
            check_exact=True,
        )
    materialized = dagster_instance.get_materialized_partitions(AssetKey(["flights", "features"]))
    assert materialized == {"2013-01-10", "2013-01-11", "2013-01-12"}
    # Every partition of a range carries the range's metadata, without the query.
    events = result.asset_materializations_for_node(asset.op.name)
    assert len(events) == 3
    for event in events:
        assert event.metadata["rows_per_day"].value == {
            day: int((expected["partition_date"] == day).sum())
            for day in ("2013-01-10", "2013-01-11", "2013-01-12")
        }
        assert "sql" not in event.metadata


def test_a_blocked_day_gets_no_features_and_the_others_of_its_run_go_on(
    flights_contract: Contract,
    flights_paths: DatasetPaths,
    data_root: Path,
    dagster_instance: DagsterInstance,
) -> None:
    write_flights(flights_contract, flights_paths, JAN, 3)
    blocked_marker(flights_paths.table("raw"), "2013-01-02").write_text("{}")
    result = materialize(
        [_asset(flights_contract)],
        instance=dagster_instance,
        resources={"lake": LakeResource(data_dir=str(data_root))},
        tags={
            "dagster/asset_partition_range_start": "2013-01-01",
            "dagster/asset_partition_range_end": "2013-01-03",
        },
    )
    assert result.success
    days = sorted(e.partition for e in result.get_asset_materialization_events())
    assert days == ["2013-01-01", "2013-01-03"]
    assert not flights_paths.partition_file("features", "2013-01-02").exists()
    assert flights_paths.partition_file("features", "2013-01-03").exists()


def test_rolling_value_known_at_its_own_time_matches_brute_force(
    flights_contract: Contract, flights_paths: DatasetPaths
) -> None:
    """Departure delays count from the moment each flight actually left, never earlier."""
    write_flights(flights_contract, flights_paths, JAN, 2)
    out = build_features(
        flights_contract, flights_paths, JAN + timedelta(days=1), JAN + timedelta(days=1)
    )
    raw = flights_between(JAN, 2)
    departed = raw.dropna(subset=["dep_delay"]).assign(
        known=lambda f: f["scheduled_departure"] + pd.to_timedelta(f["dep_delay"], unit="m")
    )
    departed["known"] = departed[["known", "scheduled_departure"]].max(axis=1)
    sample = out.sample(40, random_state=1)
    for _, row in sample.iterrows():
        t = row["event_time"]
        seen = departed[
            (departed["origin"] == row["origin"])
            & (departed["known"] >= t - pd.Timedelta(hours=2))
            & (departed["known"] < t)
        ]
        assert row["origin_departures_2h"] == len(seen)
        if len(seen):
            assert row["origin_dep_delay_2h"] == pytest.approx(seen["dep_delay"].mean(), rel=1e-9)
        else:
            assert np.isnan(row["origin_dep_delay_2h"])
        # A flight never sees its own departure delay, even when it left early.
        assert row["flight_id"] not in set(seen["flight_id"])
