"""Event time from columns: a date column plus an hour column, from landing to predictions.

The landed files carry no timestamp: the contract's `event_time.expression` makes one out
of `dep_date` and `dep_hour`. Real Dagster (in process), real MLflow on SQLite, real
Parquet and DuckDB: ingestion files the rows under their local day, the features use the
computed time (rolling windows included), a champion is trained, gated and promoted, the
days are scored, and an online request made of the same fields gets the batch prediction.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from driftloop.data.contract import load_contract
from driftloop.data.flights_source import flights_between
from driftloop.paths import PROJECT_ROOT, dataset_paths

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

NAME = "flights_dh"
DAYS = 35
EXPRESSION = "CAST(dep_date AS DATE) + to_hours(CAST(dep_hour AS BIGINT))"


def _contract_file(folder: Path) -> Path:
    """The flights contract with the scheduled departure split into a date and an hour."""
    raw = yaml.safe_load((PROJECT_ROOT / "contracts" / "flights.yaml").read_text())
    raw["name"] = NAME
    columns = raw["columns"]
    del columns["scheduled_departure"]
    columns["dep_date"] = {"type": "categorical", "nullable": False}
    columns["dep_hour"] = {"type": "numeric", "nullable": False, "min": 0, "max": 23}
    raw["event_time"] = {"expression": EXPRESSION, "timezone": "America/New_York"}
    raw["extra_features"] = {
        "hour": "hour(event_time)",
        "weekday": "dayofweek(event_time)",
        "plane_age": "year(event_time) - plane_year",
    }
    for rolling in raw["rolling_features"]:
        if rolling.get("known_at"):
            rolling["known_at"] = "event_time + to_minutes(CAST(dep_delay AS BIGINT))"
    raw["training"] = {"window_days": DAYS, "holdout_days": 7, "validation_days": 7}
    path = folder / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _land(landing: Path, first: date) -> pd.DataFrame:
    """One CSV per day, without a timestamp column: `dep_date` and `dep_hour` only."""
    flights = flights_between(first, DAYS)
    stamps = flights.pop("scheduled_departure")
    flights.insert(1, "dep_date", stamps.dt.strftime("%Y-%m-%d"))
    flights.insert(2, "dep_hour", stamps.dt.hour)
    landing.mkdir(parents=True, exist_ok=True)
    for day, rows in flights.groupby("dep_date"):
        if day == first.isoformat():
            # One row whose date makes no time: quarantined alone, with its values shown.
            bad = rows.iloc[:1].assign(dep_date="2013-01-0x", flight_id="bad-row")
            rows = pd.concat([rows, bad])
        rows.to_csv(landing / f"{NAME}_{day}.csv", index=False)
    return flights.assign(expected=stamps.dt.floor("h"))


def _read(paths, table: str, days: list[str]) -> pd.DataFrame:
    frames = [pd.read_parquet(paths.partition_file(table, d)) for d in days]
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_date_plus_hour_from_landing_to_predictions(tmp_path: Path, monkeypatch) -> None:
    from dagster import AssetKey, DagsterInstance, materialize

    from driftloop.monitoring.signals import PREDICTION, read_partition
    from driftloop.serving.online import ChampionWatcher, OnlineScorer, raw_record
    from pipelines.factory import build_dataset_definitions
    from resources.lake import LakeResource
    from resources.mlflow import MlflowResource

    root, home = tmp_path / "data", tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for key, value in {
        "DRIFTLOOP_DATA_DIR": str(root),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": uri,
        "DRIFTLOOP_REPLAY": "off",
    }.items():
        monkeypatch.setenv(key, value)
    contract = load_contract(_contract_file(tmp_path))
    paths = dataset_paths(NAME, root)
    first = date(2013, 1, 1)
    landed = _land(paths.landing, first)
    days = [(first + timedelta(days=i)).isoformat() for i in range(DAYS)]

    assets = list(build_dataset_definitions(contract).assets or [])
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(tracking_uri=uri, data_dir=str(root)),
    }
    with DagsterInstance.get() as instance:

        def run(names: list[str], ranged: bool) -> None:
            keys = {AssetKey([NAME, n]) for n in names}
            tags = {}
            if ranged:
                tags = {
                    "dagster/asset_partition_range_start": days[0],
                    "dagster/asset_partition_range_end": days[-1],
                }
            selection = [a for a in assets if a.keys & keys]
            result = materialize(
                selection, selection=list(keys), instance=instance, resources=resources, tags=tags
            )
            assert result.success, f"materializing {names} failed"

        run(["raw_data", "features"], ranged=True)
        run(["model", "eval_report", "promotion"], ranged=False)
        run(["predictions"], ranged=True)

    # Ingestion stored the computed time; every row sits under its own local day.
    raw = _read(paths, "raw", days)
    assert len(raw) == len(landed)
    reasons = [p.read_text() for p in paths.quarantine.glob("*.rows.parquet.reason.txt")]
    assert len(reasons) == 1 and "gives no time" in reasons[0]
    assert "dep_date=2013-01-0x" in reasons[0]
    stored = raw.set_index("flight_id")["_event_time"]
    expected = landed.set_index("flight_id")["expected"]
    assert (stored.sort_index() == expected.sort_index()).all()
    features = _read(paths, "features", days[-3:])
    assert (features["hour"] == features["event_time"].dt.hour).all()
    assert features["origin_dep_delay_2h"].notna().mean() > 0.5

    # Online: the client sends the date and the hour, as the files do.
    predictions = read_partition(paths, "predictions", days[-1])
    watcher = ChampionWatcher(NAME, uri, refresh_seconds=0)
    assert watcher.refresh() is not None
    scorer = OnlineScorer(contract, paths, watcher)
    assert {"dep_date", "dep_hour"} <= set(scorer.schema.required)
    assert "_event_time" not in scorer.schema.required
    row = raw[raw["flight_id"] == predictions["flight_id"].iloc[0]].iloc[0]
    record = raw_record(row, scorer.schema)
    answer = scorer.predict({"dataframe_records": [record]})
    assert answer["predictions"][0] == pytest.approx(predictions[PREDICTION].iloc[0], abs=1e-9)
    # A request whose date cannot make a time is refused naming the field.
    from driftloop.serving.online import RequestError

    with pytest.raises(RequestError) as refused:
        scorer.predict({"dataframe_records": [record | {"dep_date": "not a date"}]})
    assert refused.value.status == 422
    assert "dep_date=not a date" in refused.value.message
    assert os.environ["DRIFTLOOP_DATA_DIR"] == str(root)
