"""The drafter on small synthetic samples, one per case it must get right the first time
(text targets, reserved names, ids, integer codes and ranges, outliers, calendar parts the data
carries, a leak through a column's own history, rolling features of the target), and on
one real day of flights. Every draft must validate as written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop.data.contract import Contract, Task, load_contract
from pipelines.new_dataset import main
from tests.test_new_dataset import raw_flights


def _draft(tmp_path: Path, frame: pd.DataFrame, target: str, *extra: str) -> int:
    sample = tmp_path / "sample.csv"
    frame.to_csv(sample, index=False)
    args = ["--target", target, "--contracts-dir", str(tmp_path), "--force", *extra]
    return main(["ds", "--sample", str(sample), *args])


def _contract(tmp_path: Path) -> tuple[Contract, str]:
    path = tmp_path / "ds.yaml"
    return load_contract(path), path.read_text()


def _stream(n: int = 1500, seed: int = 0, every: str = "h") -> pd.DataFrame:
    """An event every `every` from 2024-01-01 with a category, a measurement and noise."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "at": pd.date_range("2024-01-01", periods=n, freq=every),
            "site": rng.choice(["north", "south", "east"], n),
            "reading": rng.normal(20, 5, n).round(3),
        }
    )


def test_text_target_positive_is_the_rarer_value_or_the_given_one(tmp_path: Path) -> None:
    frame = _stream()
    late = (frame["reading"] + np.random.default_rng(1).normal(0, 5, len(frame))) > 27
    frame["status"] = np.where(late, "late", "on time")
    assert _draft(tmp_path, frame, "status") == 0
    contract, text = _contract(tmp_path)
    assert contract.task is Task.binary
    assert contract.target.expression == "\"status\" = 'late'"
    assert "rarer value 'late'" in text and "status" not in contract.features
    assert _draft(tmp_path, frame, "status", "--positive", "on time") == 0
    assert _contract(tmp_path)[0].target.expression == "\"status\" = 'on time'"


def test_multiclass_text_target_is_refused_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = _stream()
    frame["grade"] = np.random.default_rng(2).choice(["a", "b", "c"], len(frame))
    assert _draft(tmp_path, frame, "grade") == 2
    err = capsys.readouterr().err
    assert "multiclass targets are not supported yet" in err and "grade" in err
    assert "Traceback" not in err and not (tmp_path / "ds.yaml").exists()


def test_reserved_names_are_never_kept(tmp_path: Path) -> None:
    frame = _stream()
    frame["date"] = frame["at"].dt.strftime("%Y-%m-%d")
    frame["Label"] = np.arange(len(frame)) % 3
    frame["load"] = frame["reading"] * 2 + np.random.default_rng(3).normal(0, 1, len(frame))
    assert _draft(tmp_path, frame, "load") == 0
    contract, text = _contract(tmp_path)
    assert not {"date", "Label"} & set(contract.columns)
    assert "# - date: a reserved name (the lake's date=YYYY-MM-DD partition folders" in text
    assert "# - Label: a reserved name" in text


def test_a_unique_regular_event_time_is_the_id(tmp_path: Path) -> None:
    frame = _stream()
    frame["load"] = frame["reading"] * 2 + np.random.default_rng(4).normal(0, 1, len(frame))
    assert _draft(tmp_path, frame, "load") == 0
    contract, text = _contract(tmp_path)
    assert contract.id_columns == ["at"]
    assert "the event time is unique and ticks regularly" in text


def test_gross_outliers_and_rare_negatives_fall_outside_the_drafted_range(
    tmp_path: Path,
) -> None:
    """A fare-like target: mostly 3-60, one entry error of 429,490 and a few refunds below
    zero. The range keeps every ordinary value and leaves the error and the refunds out
    (quarantined at ingestion), saying why."""
    frame = _stream(n=3000)
    rng = np.random.default_rng(6)
    frame["fare"] = (frame["reading"] * 2 + rng.exponential(8, len(frame))).round(2)
    frame.loc[[10, 500], "fare"] = [-52.0, -30.5]
    frame.loc[1200, "fare"] = 429490.0
    assert _draft(tmp_path, frame, "fare") == 0
    contract, text = _contract(tmp_path)
    ordinary = frame["fare"].drop([10, 500, 1200])
    fare = contract.columns["fare"]
    assert fare.min == 0 and ordinary.max() <= fare.max < 1000
    assert "gross outliers and rare negatives are quarantined" in text
    # A column without outliers keeps the sample's range widened by the margin.
    reading = contract.columns["reading"]
    assert reading.min <= frame["reading"].min() and reading.max >= frame["reading"].max()


def test_integer_codes_ranges_and_the_datas_own_hour(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    frame = _stream(n=2400, every="37min")
    n = len(frame)
    frame["kind"] = rng.choice([1, 2, 3, 4], n)
    frame["flag"] = rng.choice([0, 1], n)
    frame["share"] = rng.uniform(0, 1, n).round(4)
    frame["hour_of_day"] = frame["at"].dt.hour
    frame["load"] = frame["kind"] * 3 + frame["share"] * 5 + rng.normal(0, 1, n)
    assert _draft(tmp_path, frame, "load") == 0
    contract, _ = _contract(tmp_path)
    for code, values in {"kind": ["1", "2", "3", "4"], "flag": ["0", "1"]}.items():
        assert contract.columns[code].type == "categorical"
        assert contract.columns[code].allowed == values
    share, hour = contract.columns["share"], contract.columns["hour_of_day"]
    assert share.min == 0 and 1 <= share.max <= 1.1
    assert hour.type == "numeric" and hour.min == 0 and 23 <= hour.max <= 26
    # The data's own hour column carries the hour: no second one is added.
    assert "hour" not in contract.extra_features and "hour_of_day" in contract.features
    assert contract.partitions.start == frame["at"].min().date()
    assert contract.partitions.end == frame["at"].max().date() + pd.Timedelta(days=1)


def test_a_target_computed_from_a_columns_own_history_is_a_leak(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    frame = _stream(n=2000)
    # The class is "the meter above its previous day's mean": a function of its history.
    meter = pd.Series(np.cumsum(rng.normal(0, 1, len(frame))) + 100, index=frame["at"])
    frame["meter"] = meter.to_numpy().round(4)
    frame["high"] = (meter > meter.rolling("1D", closed="left").mean()).astype(int).to_numpy()
    assert _draft(tmp_path, frame, "high") == 0
    contract, text = _contract(tmp_path)
    assert "meter" not in contract.features
    assert "# - meter: predicts the target almost perfectly together with its own recent" in text
    assert "reading" in contract.features


def test_rolling_mean_of_the_target_is_proposed_when_it_helps(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    days, per_day, shops = 40, 60, [f"s{i}" for i in range(12)]
    rows = days * per_day
    seconds = np.sort(rng.uniform(0, days * 86400, rows))
    at = pd.Timestamp("2024-03-01") + pd.to_timedelta(seconds, "s")
    shop = rng.choice(shops, rows)
    # Each shop's level wanders from week to week: only its recent sales tell it.
    level = {s: np.cumsum(rng.normal(0, 8, days // 7 + 1)) for s in shops}
    week = ((at - at.min()).days // 7).to_numpy()
    sales = np.array([level[s][w] for s, w in zip(shop, week, strict=True)])
    sales = sales + rng.normal(0, 1, rows)
    frame = pd.DataFrame(
        {"at": at, "shop": shop, "sales": sales.round(3), "noise": rng.normal(0, 1, rows)}
    )
    assert _draft(tmp_path, frame, "sales") == 0
    contract, text = _contract(tmp_path)
    rolling = contract.rolling_features
    assert rolling and {r.group_by for r in rolling} == {"shop"}
    assert all(r.name in contract.features for r in rolling)
    assert "quick fit's holdout RMSE" in text


def test_drafts_from_one_day_of_flights_and_validates(tmp_path: Path) -> None:
    flights = raw_flights(first_months=1)
    day = flights[flights["day"].astype(int) == 2]
    sample = tmp_path / "day.csv"
    day.to_csv(sample, index=False)
    args = ["--target", "arr_delay > 15", "--contracts-dir", str(tmp_path)]
    code = main(["fl", "--sample", str(sample), *args])
    assert code == 0
    contract = load_contract(tmp_path / "fl.yaml")
    assert contract.task is Task.binary
    assert not {"arr_delay", "dep_delay", "arr_time", "dep_time"} & set(contract.features)
    # time_hour is in UTC: the day's evening flights fall on the next UTC day.
    assert str(contract.partitions.start) == "2013-01-02"
    assert str(contract.partitions.end) == "2013-01-04"
