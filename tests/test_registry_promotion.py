"""The retrain path in one Dagster run (real MLflow, lake, LightGBM): the model handed along,
the baseline as champion when it wins, reconcile and store checks, the retrain lock."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from assets import evaluation, model
from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic
from driftloop.evaluation import ledger
from driftloop.evaluation.reconcile import adopt_store, check, reconcile_registry
from driftloop.paths import DatasetPaths, dataset_paths
from driftloop.status import collect, format_text
from driftloop.training import retrain_lock
from driftloop.training.model_loading import load_scoring_model
from driftloop.training.registry import (
    make_client,
    set_alias,
    store_id,
    version_for_alias,
    version_of_run,
)
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.reconcile import build_reconcile_sensor
from tests.test_training import START, synthetic_contract

# A LightGBM this small (two stumps at a tiny rate) is no match for the baseline's linear
# fit of a linear signal: the gate cannot promote it over the baseline.
WEAK = {
    "window_days": 14,
    "holdout_days": 3,
    "validation_days": 2,
    "n_estimators": 2,
    "learning_rate": 0.01,
    "num_leaves": 2,
    "early_stopping_rounds": 0,
}


def write_linear_features(paths: DatasetPaths, days: int = 14, rows: int = 800) -> list[str]:
    rng = np.random.default_rng(7)
    written = []
    for i in range(days):
        day = (START + timedelta(days=i)).isoformat()
        x1, x2, x3 = rng.normal(size=rows), rng.normal(size=rows), rng.uniform(size=rows)
        signal = 1.5 * x1 - 1.0 * x2 + 0.8 * x3
        label = (rng.uniform(size=rows) < 1 / (1 + np.exp(-2 * signal))).astype("float64")
        frame = pd.DataFrame(
            {
                "row_id": [f"{day}-{j}" for j in range(rows)],
                "event_time": pd.Timestamp(day) + pd.to_timedelta(np.arange(rows), unit="s"),
                "partition_date": day,
                "x1": x1,
                "x2": x2,
                "x3": x3,
                "shop": pd.Series(rng.choice(["a", "b"], rows), dtype="object"),
                "label": label,
            }
        )
        write_parquet_atomic(frame, paths.partition_file("features", day))
        written.append(day)
    return written


def retrain(contract: Contract, root: Path, instance: DagsterInstance, config: dict):
    """model -> eval_report -> promotion in one run, as the retrain job runs them."""
    assets = [*model.build(contract).assets, *evaluation.build(contract).assets]
    return materialize(
        assets,
        instance=instance,
        resources={
            "lake": LakeResource(data_dir=str(root)),
            "mlflow": MlflowResource(data_dir=str(root)),
        },
        run_config={"ops": {f"{contract.name}__model": {"config": config}}},
        raise_on_error=False,
    )


def metadata_of(result, asset: str) -> dict:
    (event,) = [
        e
        for e in result.get_asset_materialization_events()
        if e.materialization.asset_key == AssetKey(["synth", asset])
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture
def synth(data_root: Path, tmp_path: Path) -> tuple[Contract, DatasetPaths]:
    contract = synthetic_contract(tmp_path)
    paths = dataset_paths(contract.name, data_root)
    write_linear_features(paths)
    return contract, paths


@pytest.mark.slow
def test_the_baseline_becomes_champion_when_it_wins_and_reconcile_repairs(
    synth, data_root: Path, dagster_instance: DagsterInstance
) -> None:
    contract, paths = synth
    client = make_client(f"sqlite:///{data_root / 'mlflow.db'}")
    result = retrain(contract, data_root, dagster_instance, WEAK)
    assert result.success
    trained = metadata_of(result, "model")
    evaluated = metadata_of(result, "eval_report")
    promoted = metadata_of(result, "promotion")
    # The run decided the model its own training step registered.
    assert evaluated["challenger_version"] == trained["model_version"] == "1"
    assert evaluated["model_run_id"] == trained["mlflow_run_id"]
    assert evaluated["decision"] == "reject"
    # The weak LightGBM loses to the baseline on the validation days, so the model trained
    # is itself of the baseline's kind (the kind better on validation serves): equal on the
    # holdout, which the gate's interval cannot call better.
    kind = client.get_model_version("synth", "1").tags["driftloop.model_kind"]
    assert kind == "baseline"
    assert trained["holdout_roc_auc"] == trained["baseline_holdout_roc_auc"]

    # No champion before: the baseline, the better of the two by the gate, is champion,
    # registered as a version of its own (logged by its own run).
    champion = version_for_alias(client, "synth", "champion")
    assert champion is not None and str(champion.version) == "2"
    assert champion.run_id == trained["baseline_run_id"] != trained["mlflow_run_id"]
    assert champion.tags["driftloop.model_kind"] == "baseline"
    assert promoted["champion_after"] == "2"
    assert promoted["champion_after_run_id"] == champion.run_id
    entries = ledger.read(paths)
    assert list(entries["action"]) == ["rejected", "promoted"]
    assert list(entries["model_run_id"]) == [trained["mlflow_run_id"], champion.run_id]
    assert entries["store_id"].tolist() == [store_id(client, "synth")] * 2
    reasons = json.loads(entries.iloc[-1]["reasons"])
    assert reasons[0].startswith(f"first model: the gate did not promote v1 ({kind})")
    # It scores like any registered model.
    holdout = pd.read_parquet(paths.partition_file("features", "2024-03-14"))
    assert load_scoring_model("models:/synth@champion", client.tracking_uri)(holdout).shape == (
        len(holdout),
    )
    state = collect(client, paths, "synth")
    assert state["consistency"]["agree"]
    # Status says the baseline was kept over the refused model, with the sign explained,
    # and never shows the challenger alias as a second model when it names the champion.
    gate = state["registry"]["champion"]["gate"]
    assert (gate["challenger_version"], gate["challenger_kind"]) == ("1", kind)
    assert gate["diff"] <= 0
    text = format_text(state)
    champion_row = next(line for line in text.splitlines() if line.startswith("champion"))
    assert "v2 (baseline)" in champion_row
    assert f"kept over refused v1 ({kind}): v1 minus v2 = " in champion_row
    assert "promoted -" not in text
    challenger_row = next(line for line in text.splitlines() if line.startswith("challenger"))
    assert state["registry"]["challenger"]["version"] == "1"
    assert f"v1 ({kind})" in challenger_row and "rejected " in challenger_row
    assert "the champion itself" not in challenger_row
    set_alias(client, "synth", "challenger", "2")
    text = format_text(collect(client, paths, "synth"))
    challenger_row = next(line for line in text.splitlines() if line.startswith("challenger"))
    assert "v2 (baseline), the champion itself: no challenger pending" in challenger_row
    set_alias(client, "synth", "challenger", "1")

    # Running the promotion again changes nothing.
    files = ledger.entry_files(paths)
    again = materialize(
        [a for a in evaluation.build(contract).assets if a.key.path[-1] == "promotion"],
        instance=dagster_instance,
        resources={"lake": LakeResource(), "mlflow": MlflowResource()},
    )
    assert again.success and ledger.entry_files(paths) == files

    # An alias moved by hand is a disagreement that status shows and reconcile repairs.
    set_alias(client, "synth", "champion", "1")
    state = check(paths, client, "synth")
    assert not state.agree and state.repairable and "v2" in state.problems[0]
    # The reconcile sensor repairs it (and finds no dead run: every run here finished).
    sensor = build_reconcile_sensor(contract)
    resources = {"lake": LakeResource(), "mlflow": MlflowResource()}
    with build_sensor_context(instance=dagster_instance, resources=resources) as context:
        outcome = sensor(context)
    assert outcome.skip_message == ("moved the champion alias from v1 to v2, the ledger's champion")
    assert str(version_for_alias(client, "synth", "champion").version) == "2"
    assert ledger.read(paths).iloc[-1]["action"] == "reconciled"
    assert check(paths, client, "synth").agree
    assert not reconcile_registry(paths, client, "synth").actions


@pytest.mark.slow
def test_a_replaced_store_stops_promotion_until_adopted(
    synth, data_root: Path, tmp_path: Path, dagster_instance: DagsterInstance, monkeypatch
) -> None:
    contract, paths = synth
    # The ledger was written against another store whose champion was "v1".
    ledger.append(
        paths,
        ledger.LedgerEntry(
            dataset="synth",
            action="promoted",
            challenger_version="1",
            champion_after="1",
            model_run_id="run-in-the-old-store",
            champion_after_run_id="run-in-the-old-store",
            store_id="synth@12345",
        ),
    )
    client = make_client(f"sqlite:///{data_root / 'mlflow.db'}")
    state = check(paths, client, "synth")
    assert not state.agree and not state.repairable
    assert "lost or replaced" in state.problems[0]
    # Training refuses, naming the command that adopts the store.
    result = retrain(contract, data_root, dagster_instance, WEAK)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "synth@12345" in message and "--adopt-store" in message
    assert version_for_alias(client, "synth", "champion") is None

    adopt_store(paths, client, "synth", "the old store was lost")
    assert check(paths, client, "synth").agree
    assert retrain(contract, data_root, dagster_instance, WEAK).success
    champion = version_for_alias(client, "synth", "champion")
    assert champion is not None and version_of_run(client, "synth", champion.run_id)
    assert check(paths, client, "synth").agree
    # Rollback has nothing to go back to in this store: the old store's champion is gone.
    assert ledger.previous_champion_run(paths) is None


def test_retrain_lock_admits_one_active_holder(flights_paths: DatasetPaths) -> None:
    active = {"run-a"}
    holder = retrain_lock.acquire(flights_paths, "run-a", lambda h: h.owner in active)
    assert holder.owner == "run-a" and retrain_lock.holder(flights_paths) == holder
    with pytest.raises(retrain_lock.RetrainBusy, match="run-a"):
        retrain_lock.acquire(flights_paths, "run-b", lambda h: h.owner in active)
    # A holder that is no longer in progress (killed, failed) does not block.
    active.clear()
    assert retrain_lock.acquire(flights_paths, "run-b", lambda h: False).owner == "run-b"
    assert not retrain_lock.release(flights_paths, "run-a")
    assert retrain_lock.release(flights_paths, "run-b")
    assert retrain_lock.holder(flights_paths) is None
