"""eval_report, promotion and rollback end to end: real MLflow (SQLite), lake and Dagster.

Small numpy pyfunc models play baseline, champion and challenger over synthetic features
partitions whose labels depend on the hour and the carrier, so "better" is by design.
"""

from __future__ import annotations

import json
import warnings
from datetime import date, datetime, timedelta
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, Definitions, materialize

from assets import evaluation
from driftloop.data.contract import ColumnType, Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation import ledger
from driftloop.status import collect
from driftloop.training.registry import (
    experiment_id_for,
    make_client,
    set_alias,
    store_id,
    using_tracking_uri,
    version_for_alias,
)
from pipelines import status as status_cli
from pipelines.rollback import build_rollback_job
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

HOLDOUT = ("2013-03-01", "2013-03-07")
ROWS_PER_DAY = 1500
GOOD = ["AA", "B6", "DL", "UA", "US", "VX", "WN", "9E"]  # carriers that are late less often
CARRIERS = [*GOOD, "EV", "F9", "FL", "HA", "MQ", "OO", "YV", "AS"]


def _signal(frame: pd.DataFrame, hour_weight: float, carrier_weight: float) -> np.ndarray:
    hour = (frame["hour"].to_numpy(dtype=float) - 12.0) / 4.0
    carrier = np.where(frame["carrier"].isin(GOOD), -1.0, 1.0)
    return hour_weight * hour + carrier_weight * carrier


with warnings.catch_warnings():  # MLflow suggests type hints; the signature is explicit
    warnings.simplefilter("ignore", UserWarning)

    class LinearModel(mlflow.pyfunc.PythonModel):
        """p = sigmoid(w_hour * hour + w_carrier * carrier effect - 1)."""

        def __init__(self, hour_weight: float, carrier_weight: float) -> None:
            self.hour_weight = hour_weight
            self.carrier_weight = carrier_weight

        def predict(self, context, model_input, params=None):
            z = _signal(model_input, self.hour_weight, self.carrier_weight) - 1.0
            return 1.0 / (1.0 + np.exp(-z))


def _write_features(contract: Contract, paths) -> pd.DataFrame:
    rng = np.random.default_rng(42)
    start = date.fromisoformat(HOLDOUT[0])
    frames = []
    for d in range(7):
        day = start + timedelta(days=d)
        n = ROWS_PER_DAY
        frame = pd.DataFrame(
            {
                "flight_id": [f"{day}-{i}" for i in range(n)],
                "event_time": [
                    datetime(day.year, day.month, day.day) + timedelta(minutes=int(m))
                    for m in rng.integers(5 * 60, 23 * 60, n)
                ],
                "partition_date": day.isoformat(),
            }
        )
        for feature in contract.features:
            if contract.feature_type(feature) == ColumnType.categorical:
                frame[feature] = rng.choice(["EWR", "JFK", "LGA"], n)
            else:
                frame[feature] = rng.normal(size=n)
        frame["carrier"] = rng.choice(CARRIERS, n)
        frame["hour"] = frame["event_time"].dt.hour + frame["event_time"].dt.minute / 60.0
        p = 1.0 / (1.0 + np.exp(-(_signal(frame, 1.5, 1.5) - 1.0)))
        frame["label"] = (rng.random(n) < p).astype(float)
        frame.loc[frame.index[:20], "label"] = np.nan  # labels not yet known
        write_parquet_atomic(frame, paths.partition_file("features", day.isoformat()))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _register(contract, uri: str, root: Path, model: LinearModel, baseline=None) -> str:
    """Log model (+ baseline) in one run, register it, tag it as training does, alias it."""
    from mlflow.models import infer_signature

    client = make_client(uri)
    experiment = experiment_id_for(client, contract.name, uri, root / "mlartifacts")
    sample = _write_sample(contract)
    signature = infer_signature(sample, model.predict(None, sample))
    with using_tracking_uri(uri), mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_metrics({"holdout_roc_auc": 0.7, "holdout_log_loss": 0.5})
        info = mlflow.pyfunc.log_model(
            name="model", python_model=model, signature=signature, pip_requirements=[]
        )
        mlflow.pyfunc.log_model(
            name="baseline",
            python_model=baseline or LinearModel(0.5, 0.0),
            signature=signature,
            pip_requirements=[],
        )
        version = mlflow.register_model(info.model_uri, contract.name).version
    tags = {
        "driftloop.holdout_start": HOLDOUT[0],
        "driftloop.holdout_end": HOLDOUT[1],
        "driftloop.baseline_run_model_uri": f"runs:/{run.info.run_id}/baseline",
        "driftloop.primary_metric": "roc_auc",
        "dagster.run_id": "test-run",
    }
    for key, value in tags.items():
        client.set_model_version_tag(contract.name, version, key, value)
    set_alias(client, contract.name, "challenger", version)
    return str(version)


def _write_sample(contract: Contract) -> pd.DataFrame:
    row = {
        f: ("JFK" if contract.feature_type(f) == ColumnType.categorical else 1.0)
        for f in contract.features
    }
    return pd.DataFrame([row, row | {"carrier": "AA", "hour": 20.0}])


def _evaluate_and_promote(contract, resources, instance):
    defs = evaluation.build(contract)
    assets = list(defs.assets)
    result = materialize(assets, instance=instance, resources=resources)
    assert result.success
    by_key = {
        m.asset_key: m.metadata
        for m in (e.materialization for e in result.get_asset_materialization_events())
    }
    return by_key[AssetKey(["flights", "eval_report"])], by_key[AssetKey(["flights", "promotion"])]


@pytest.fixture
def setup(flights_contract, flights_paths, data_root, dagster_instance):
    uri = f"sqlite:///{data_root / 'mlflow.db'}"
    resources = {
        "lake": LakeResource(data_dir=str(data_root)),
        "mlflow": MlflowResource(tracking_uri=uri, data_dir=str(data_root)),
    }
    return flights_contract, flights_paths, data_root, uri, resources, dagster_instance


@pytest.mark.slow
def test_promote_reject_rollback_and_status(setup, capsys) -> None:
    contract, paths, root, uri, resources, instance = setup
    client = make_client(uri)

    # Nothing registered yet: both assets succeed and say so.
    eval_meta, promo_meta = _evaluate_and_promote(contract, resources, instance)
    assert "nothing to evaluate" in eval_meta["status"].value
    assert "nothing to promote" in promo_meta["status"].value
    assert ledger.read(paths).empty

    _write_features(contract, paths)

    # 1. First model: beats the hour-only baseline -> champion.
    v1 = _register(contract, uri, root, LinearModel(1.0, 0.5))
    eval_meta, promo_meta = _evaluate_and_promote(contract, resources, instance)
    assert eval_meta["decision"].value == "promote"
    assert eval_meta["reference"].value == "baseline (scikit-learn)"
    assert eval_meta["ci_low"].value > 0
    assert eval_meta["rows"].value == 7 * (ROWS_PER_DAY - 20)
    # The holdout's 7 days are the bootstrap's unit, whole days at a time.
    assert eval_meta["bootstrap_resampled"].value == "its 7 days (whole days)"
    assert "| roc_auc |" in eval_meta["overall_metrics"].value
    assert "carrier" in eval_meta["slices"].value and "calibration" in eval_meta
    report = Path(eval_meta["report_path"].value)
    run_id = client.get_model_version("flights", v1).run_id
    assert report == paths.reports / "eval" / f"v{v1}-{run_id[:12]}.html" and report.exists()
    decision_json = json.loads(report.with_suffix(".json").read_text())
    assert decision_json["decision"]["promote"] and decision_json["champion_version"] is None
    assert decision_json["model_run_id"] == run_id
    logged = {a.path for a in client.list_artifacts(run_id, "eval_report")}
    stem = f"eval_report/v{v1}-{run_id[:12]}"
    assert logged == {f"{stem}.html", f"{stem}.json"}
    assert promo_meta["decision"].value == "promoted"
    assert str(version_for_alias(client, "flights", "champion").version) == v1

    # 2. The true model beats champion v1 -> champion moves. First a run that "crashed"
    # after its ledger entry and before the alias move: the re-run completes it without a
    # second entry.
    v2 = _register(contract, uri, root, LinearModel(1.5, 1.5))
    eval_asset, promotion_asset = evaluation.build(contract).assets
    assert materialize([eval_asset], instance=instance, resources=resources).success
    run_v1, run_v2 = (client.get_model_version("flights", v).run_id for v in (v1, v2))
    ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset="flights",
            action="promoted",
            challenger_version=v2,
            champion_before=v1,
            champion_after=v2,
            reasons=["written by the crashed run"],
            model_run_id=run_v2,
            champion_before_run_id=run_v1,
            champion_after_run_id=run_v2,
            store_id=store_id(client, "flights"),
        ),
    )
    # Until the next run, status says the two disagree.
    assert not collect(client, paths, "flights")["consistency"]["agree"]
    assert str(version_for_alias(client, "flights", "champion").version) == v1
    run = materialize([promotion_asset], instance=instance, resources=resources)
    promo_meta = run.get_asset_materialization_events()[0].materialization.metadata
    assert "ledger_entry" not in promo_meta
    assert promo_meta["decision"].value == "promoted"
    assert promo_meta["champion_before"].value == v1
    assert str(version_for_alias(client, "flights", "champion").version) == v2
    assert collect(client, paths, "flights")["consistency"]["agree"]
    tags = client.get_model_version("flights", v2).tags
    assert tags["driftloop.gate_decision"] == "promoted"
    assert float(tags["driftloop.gate_ci_low"]) > 0

    # 3. A model with the carrier effect backwards is worse -> rejected, champion stays.
    v3 = _register(contract, uri, root, LinearModel(1.5, -1.0))
    eval_meta, promo_meta = _evaluate_and_promote(contract, resources, instance)
    assert eval_meta["decision"].value == "reject"
    assert promo_meta["decision"].value == "rejected"
    assert str(version_for_alias(client, "flights", "champion").version) == v2
    assert client.get_model_version("flights", v3).tags["driftloop.gate_decision"] == "rejected"

    entries = ledger.read(paths)
    assert list(entries["action"]) == ["promoted", "promoted", "rejected"]
    assert list(entries["challenger_version"]) == [v1, v2, v3]
    assert list(entries["champion_after"]) == [v1, v2, v2]
    rejected = entries.iloc[-1]
    reasons = json.loads(rejected["reasons"])
    assert reasons[0].startswith(f"worse than champion v{v2}: ROC AUC")
    assert rejected["ci_high"] < 0 and rejected["metric"] == "roc_auc"
    assert rejected["report_path"].endswith(".html") and f"/v{v3}-" in rejected["report_path"]
    # Keyed on the model's identity: each entry names the run that logged its model.
    assert list(entries["model_run_id"]) == [
        client.get_model_version("flights", v).run_id for v in (v1, v2, v3)
    ]
    assert entries["store_id"].nunique() == 1

    # Re-running the promotion repeats nothing in the ledger.
    files = ledger.entry_files(paths)
    result = materialize(
        [a for a in evaluation.build(contract).assets if a.key.path[-1] == "promotion"],
        instance=instance,
        resources=resources,
    )
    assert result.success and ledger.entry_files(paths) == files

    # 4. Rollback: back to v1, the champion before v2, recorded in the ledger.
    job = build_rollback_job(contract)
    assert job.name == "flights_rollback"
    run = job.execute_in_process(instance=instance, resources=resources)
    assert run.success
    assert str(version_for_alias(client, "flights", "champion").version) == v1
    assert client.get_model_version("flights", v2).tags["driftloop.rolled_back_to"] == v1
    last = ledger.read(paths).iloc[-1]
    assert (last["action"], last["champion_before"], last["champion_after"]) == (
        "rollback",
        v2,
        v1,
    )
    assert last["dagster_run_id"] == run.run_id

    # Nothing earlier than v1: a clear error, and nothing changes.
    failed = job.execute_in_process(instance=instance, resources=resources, raise_on_error=False)
    assert not failed.success
    (failure,) = [e for e in failed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "nothing to roll back to" in failure.event_specific_data.error.message
    assert str(version_for_alias(client, "flights", "champion").version) == v1
    assert len(ledger.read(paths)) == 4

    # An explicit target works too (and is checked).
    config = {"ops": {"flights_rollback_champion": {"config": {"to_version": v2}}}}
    assert job.execute_in_process(run_config=config, instance=instance, resources=resources)
    assert str(version_for_alias(client, "flights", "champion").version) == v2

    # 5. Status: JSON from the CLI matches the library, text names the versions.
    assert status_cli.main(["--dataset", "flights", "--json", "--data-dir", str(root)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(collect(client, paths, "flights"), default=str))
    assert set(printed) >= {"dataset", "registry", "ledger"}
    assert printed["registry"]["champion"]["version"] == v2
    assert printed["registry"]["challenger"]["version"] == v3
    assert printed["registry"]["challenger"]["gate"]["decision"] == "rejected"
    assert printed["registry"]["champion"]["metrics"]["holdout_roc_auc"] == 0.7
    assert printed["registry"]["champion"]["holdout"] == {"start": HOLDOUT[0], "end": HOLDOUT[1]}
    actions = [e["action"] for e in printed["ledger"]]
    assert actions == ["promoted", "promoted", "rejected", "rollback", "rollback"]
    assert status_cli.main(["--dataset", "flights", "--data-dir", str(root)]) == 0
    text = capsys.readouterr().out
    assert "champion" in text and f"v{v2}" in text and "rollback" in text


@pytest.mark.slow
def test_rollback_without_champion_and_definitions(setup) -> None:
    contract, _, _, _, resources, instance = setup
    defs = Definitions.merge(
        evaluation.build(contract),
        Definitions(jobs=[build_rollback_job(contract)], resources=resources),
    )
    job = defs.get_job_def("flights_rollback")
    run = job.execute_in_process(instance=instance, raise_on_error=False)
    assert not run.success
    (failure,) = [e for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "has no champion" in failure.event_specific_data.error.message
    keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}
    assert {"flights/eval_report", "flights/promotion"} <= keys
