"""The canary served: 20% of 1,000 distinct flights go to the challenger, the same flights
again go to the same arms, every request is in the log, the performance of both arms is
reported once labels are in, and `?explain=true` returns the batch scorer's contributions."""

from __future__ import annotations

import json
import math
import os
import urllib.request
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from browser_helpers import flights_env, prepare_flights
from e2e_helpers import free_port, wait_for
from serving_helpers import served

from driftloop.data.contract import load_contract
from driftloop.evaluation import ledger
from driftloop.evaluation.explain import explain, tabular_model, top_contributions
from driftloop.monitoring.signals import read_partition
from driftloop.paths import PROJECT_ROOT, dataset_paths
from driftloop.serving import canary_log
from driftloop.serving.batch import TOP_CONTRIBUTIONS, Explainer, Scorer, score_day
from driftloop.serving.requests import RequestSchema, raw_record
from pipelines import canary as command


def _performance_arms(env: dict[str, str], root: Path, contract: Any, day: str) -> list[dict]:
    """Materialize the performance asset of `day` as the loop does; its canary_arms."""
    from dagster import AssetKey, DagsterInstance, materialize

    from pipelines.factory import build_dataset_definitions
    from resources.lake import LakeResource
    from resources.mlflow import MlflowResource

    key = AssetKey(["flights", "performance"])
    [performance] = [a for a in build_dataset_definitions(contract).assets if key in a.keys]
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(tracking_uri=env["MLFLOW_TRACKING_URI"], data_dir=str(root)),
    }
    with DagsterInstance.get() as instance:
        result = materialize(
            [performance], partition_key=day, resources=resources, instance=instance
        )
    assert result.success
    [event] = result.asset_materializations_for_node("flights__performance")
    return event.metadata["canary_arms"].value


def _materialize(env: dict[str, str], root: Path, names: list[str]) -> None:
    """Materialize flights assets in one run, as the retrain job does."""
    from dagster import AssetKey, DagsterInstance, materialize

    from driftloop.data.contract import load_contracts
    from driftloop.paths import contracts_dir
    from pipelines.factory import build_dataset_definitions
    from resources.lake import LakeResource
    from resources.mlflow import MlflowResource

    contract = load_contracts(contracts_dir())["flights"]
    keys = {AssetKey(["flights", n]) for n in names}
    assets = [a for a in build_dataset_definitions(contract).assets if a.keys & keys]
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(tracking_uri=env["MLFLOW_TRACKING_URI"], data_dir=str(root)),
    }
    with DagsterInstance.get() as instance:
        result = materialize(assets, selection=list(keys), instance=instance, resources=resources)
    assert result.success, f"materializing {names} failed"


def _post(url: str, records: list[dict]) -> tuple[dict[str, Any], dict[str, str]]:
    data = json.dumps({"dataframe_records": records}).encode()
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=120) as response:
        # Header names arrive lower-cased (ASGI); compare them so.
        return json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_canary_served_sticky_logged_measured_and_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    env = flights_env(tmp_path)
    prepared = prepare_flights(env, days=35, drift_days=0)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    contract = load_contract(PROJECT_ROOT / "contracts" / "flights.yaml")
    paths = dataset_paths("flights", prepared.root)
    # A challenger: the model trained again (its own run, registered as the next version).
    from driftloop.training.registry import make_client

    _materialize(env, prepared.root, ["model"])
    client = make_client(prepared.tracking_uri)
    champion = client.get_model_version("flights", prepared.champion_version)
    challenger = client.get_model_version_by_alias("flights", "challenger")
    assert challenger.version != champion.version
    assert command.main(["start", "--dataset", "flights", "--share", "0.2"]) == 0
    capsys.readouterr()

    schema = RequestSchema.from_contract(contract)
    # Two days whose first one has its labels due by the data clock (label delay 1 day).
    days = prepared.days[-3:-1]
    raw = pd.concat([read_partition(paths, "raw", d) for d in days]).head(1000)
    assert raw["flight_id"].nunique() == 1000
    records = [raw_record(row, schema) for _, row in raw.iterrows()]

    with served(
        {**os.environ, **env}, tmp_path / "serve.log", free_port(), "--refresh-seconds", "1"
    ) as url:
        invocations = f"{url}/invocations"
        wait_for(
            "the canary to be routed",
            lambda: "canary" in _post(invocations, records[:50])[1].get("x-canary-arm", ""),
            timeout=60,
            every=1,
        )
        arms, again = [], []
        for start in range(0, 1000, 100):
            body, headers = _post(invocations, records[start : start + 100])
            assert len(body["predictions"]) == 100
            arms += headers["x-canary-arm"].split(",")
            versions = headers["x-model-version"].split(",")
            expected = {"canary": str(challenger.version), "champion": str(champion.version)}
            assert all(v == expected[a] for a, v in zip(arms[-100:], versions, strict=True))
        for start in range(0, 1000, 250):
            again += _post(invocations, records[start : start + 250])[1]["x-canary-arm"].split(",")
        # Explanations of rows the champion scored, to compare with its batch scorer below.
        first = records[0]["scheduled_departure"][:10]
        picked = [
            r
            for r, arm in zip(records, arms, strict=True)
            if arm == "champion" and r["scheduled_departure"].startswith(first)
        ][:3]
        explained, _ = _post(f"{invocations}?explain=true", picked)
        with urllib.request.urlopen(f"{url}/version", timeout=30) as response:
            version = json.loads(response.read())
    assert version["model_version"] == str(champion.version)
    assert version["canary"]["model_version"] == str(challenger.version)
    assert version["canary"]["share"] == 0.2

    share = arms.count("canary") / len(arms)
    assert abs(share - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 1000), share
    assert again == arms  # sticky: the same flights, the same arms

    # Every request row is in the log (the server flushes it when it stops).
    logged = pd.concat([canary_log.read_day(paths, d) for d in canary_log.online_days(paths)])
    counted = logged["row_id"].value_counts()
    assert set(counted.index) == set(raw["flight_id"])
    assert (counted >= 2).all()  # each flight was asked at least twice
    # The loop's performance partition of a day whose labels are due reports both arms.
    arms = _performance_arms(env, prepared.root, contract, days[0])
    assert {a["arm"] for a in arms} == {"canary", "champion"}
    assert all(a["labelled_rows"] > 0 and not math.isnan(a["value"]) for a in arms)
    table = pd.read_parquet(paths.partition_file(canary_log.ARM_PERFORMANCE_TABLE, days[0]))
    assert sorted(table["arm"]) == ["canary", "champion"]

    # The traffic was replayed (its event-time days are in 2013, the canary started today):
    # `canary status` pools it per arm, and the promotion's ledger entry cites it.
    assert command.main(["status", "--dataset", "flights"]) == 0
    status = json.loads(capsys.readouterr().out)["online_evidence"]
    assert days[0] in status["days"] and set(status["arms"]) == {"canary", "champion"}
    assert all(
        a["labelled_rows"] > 0 and a["ci_low"] <= a["value"] for a in status["arms"].values()
    )
    _materialize(env, prepared.root, ["eval_report", "promotion"])
    entries = ledger.read(paths)
    decided = entries[entries["action"].isin(["promoted", "rejected"])].iloc[-1]
    assert decided["challenger_version"] == str(challenger.version)
    cited = json.loads(decided["details"])["online_evidence"]
    assert cited["arms"].keys() == status["arms"].keys()
    assert all(a["labelled_rows"] > 0 for a in cited["arms"].values())
    assert "online evidence of the canary at 20%" in json.loads(decided["reasons"])[-1]
    if decided["action"] == "promoted":  # the promotion ended the canary, on the record
        assert entries["action"].iloc[-1] == "canary_stopped"

    # ?explain=true: the same top contributions as the batch scorer's for the same rows.
    model = tabular_model(f"models:/flights/{champion.version}", prepared.tracking_uri)
    elsewhere = dataset_paths("flights", tmp_path / "batch")
    day = picked[0]["scheduled_departure"][:10]
    source = paths.partition_file("features", day)
    target = elsewhere.partition_file("features", day)
    target.parent.mkdir(parents=True)
    target.write_bytes(source.read_bytes())
    scorer = Scorer(lambda table, threads=0: model.predict(table, threads), str(champion.version))
    written = score_day(contract, elsewhere, day, scorer, explainer=Explainer(model, top=5))
    batch = pd.read_parquet(written.path).set_index("flight_id")
    for record, online in zip(picked, explained["explanations"], strict=True):
        offline = json.loads(batch.loc[record["flight_id"], TOP_CONTRIBUTIONS])
        assert [c["feature"] for c in online] == list(offline)
        assert [c["contribution"] for c in online] == pytest.approx(
            list(offline.values()), abs=1e-6
        )
    features = pd.read_parquet(source)
    direct = top_contributions(explain(model, features), 5)
    assert len(direct) == len(features)
