"""Replay of the embedded flights data into the landing zone."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from driftloop.data.flights_source import flights_between
from driftloop.data.replay import replay_days, replay_next_day, replayed_days, state_file
from driftloop.paths import PROJECT_ROOT, dataset_paths
from pipelines.replay import main


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_cli_writes_one_file_per_day_and_is_idempotent(
    data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--dataset", "flights", "--start", "2013-01-30", "--days", "3"]
    assert main([*args, "--data-dir", str(data_root)]) == 0
    printed = capsys.readouterr().out
    landing = data_root / "landing" / "flights"
    names = ["flights_2013-01-30.csv", "flights_2013-01-31.csv", "flights_2013-02-01.csv"]
    assert sorted(p.name for p in landing.iterdir()) == names  # no temporary files left
    for name, day in zip(
        names, [date(2013, 1, 30), date(2013, 1, 31), date(2013, 2, 1)], strict=True
    ):
        landed = pd.read_csv(landing / name)
        expected = flights_between(day, 1)
        assert len(landed) == len(expected) > 500
        assert landed["flight_id"].tolist() == expected["flight_id"].tolist()
        assert (pd.to_datetime(landed["scheduled_departure"]).dt.date == day).all()
        assert landed["arr_delay"].isna().sum() == expected["arr_delay"].isna().sum()
        assert f"rows={len(expected)}" in printed and f"day={day.isoformat()}" in printed
        assert name in printed

    first = _snapshot(landing)
    mtimes = {p.name: p.stat().st_mtime_ns for p in landing.iterdir()}
    assert main([*args, "--data-dir", str(data_root)]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert _snapshot(landing) == first
    assert {p.name: p.stat().st_mtime_ns for p in landing.iterdir()} == mtimes
    assert replayed_days(dataset_paths("flights", data_root)) == [
        date(2013, 1, 30),
        date(2013, 1, 31),
        date(2013, 2, 1),
    ]


def test_parquet_format(data_root: Path) -> None:
    paths = dataset_paths("flights", data_root)
    [item] = replay_days(paths, date(2013, 7, 4), 1, fmt="parquet")
    assert item.path.name == "flights_2013-07-04.parquet"
    landed = pd.read_parquet(item.path)
    pd.testing.assert_frame_equal(landed, flights_between(date(2013, 7, 4), 1))
    assert replay_days(paths, date(2013, 7, 4), 1, fmt="parquet")[0].status == "unchanged"


def test_clear_errors(data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--start", "2013-01-01", "--data-dir", str(data_root)]
    assert main(["--dataset", "taxis", *base]) == 2
    assert "only the embedded datasets ['flights']" in capsys.readouterr().err
    assert main(["--dataset", "flights", "--start", "2013-12-30", "--days", "5"]) == 2
    assert "covers 2013-01-01..2013-12-31" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot be replayed"):
        replay_next_day(dataset_paths("taxis", data_root))


def test_replay_next_day_moves_forward(data_root: Path) -> None:
    paths = dataset_paths("flights", data_root)
    assert replay_next_day(paths).name == "flights_2013-01-01.csv"
    assert replay_next_day(paths).name == "flights_2013-01-02.csv"
    replay_days(paths, date(2013, 3, 1), 2)
    assert replay_next_day(paths).name == "flights_2013-03-03.csv"
    state = json.loads(state_file(paths).read_text())
    assert state["replayed"][-1] == "2013-03-03"
    assert state_file(paths) == data_root / "replay" / "flights.json"

    replay_days(paths, date(2013, 12, 31), 1)
    assert replay_next_day(paths) is None


@pytest.mark.slow
def test_module_entry_point(data_root: Path) -> None:
    command = [sys.executable, "-m", "pipelines.replay", "--start", "2013-05-01", "--days", "1"]
    done = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    # DRIFTLOOP_DATA_DIR (set by the data_root fixture) is the default data root.
    assert (data_root / "landing" / "flights" / "flights_2013-05-01.csv").exists()
    assert "flights_2013-05-01.csv" in done.stdout
