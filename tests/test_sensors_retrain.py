"""The retrain trigger on a real instance and a real MLflow store: N of M, cooldown, bootstrap."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, SensorResult, SkipReason, build_sensor_context

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.data.retraining import TriggerPolicy
from driftloop.monitoring.drift_outcome import summary_path
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.retrain_trigger import build_retrain_sensor, days_needed_for_first_model

START = date(2013, 3, 1)


def _days(n: int) -> list[str]:
    return [(START + timedelta(days=i)).isoformat() for i in range(n)]


def _write_feature_days(paths: DatasetPaths, days: list[str]) -> None:
    for day in days:
        write_parquet_atomic(pd.DataFrame({"x": [1.0]}), paths.partition_file("features", day))


def _write_drift(paths: DatasetPaths, day: str, breached: bool) -> None:
    body = {"day": day, "breached": breached, "share_drifted": 0.8 if breached else 0.1}
    write_text_atomic(json.dumps(body), summary_path(paths, day))


def _register_champion(mlflow: MlflowResource, dataset: str) -> None:
    client = mlflow.client()
    client.create_registered_model(dataset)
    version = client.create_model_version(
        dataset, source=str(Path(mlflow.artifact_root()) / "placeholder"), run_id=None
    )
    client.set_registered_model_alias(dataset, "champion", version.version)


def _evaluate(contract: Contract, instance: DagsterInstance, root: Path, cursor: str | None = None):
    sensor = build_retrain_sensor(contract, f"{contract.name}_retrain")
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(data_dir=str(root)),
    }
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return sensor(context)


@pytest.fixture
def mlflow(data_root: Path) -> MlflowResource:
    return MlflowResource(data_dir=str(data_root))


def test_no_features_no_run(flights_contract, flights_paths, dagster_instance) -> None:
    result = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(result, SkipReason)


def test_first_model_waits_for_enough_days_then_bootstraps(
    flights_contract, flights_paths, dagster_instance
) -> None:
    needed = days_needed_for_first_model(flights_contract)
    _write_feature_days(flights_paths, _days(needed - 1))
    waiting = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(waiting, SkipReason)
    assert f"{needed - 1} of {needed}" in waiting.skip_message

    _write_feature_days(flights_paths, _days(needed))
    result = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(result, SensorResult)
    [request] = result.run_requests
    assert request.job_name == "flights_retrain"
    assert request.tags["driftloop/trigger"] == "bootstrap"
    assert "no champion yet" in request.tags["driftloop/trigger_reason"]


def test_one_drifted_day_does_not_retrain_but_n_of_m_do(
    flights_contract, flights_paths, dagster_instance, mlflow
) -> None:
    _register_champion(mlflow, "flights")
    days = _days(10)
    _write_feature_days(flights_paths, days)
    _write_drift(flights_paths, days[-1], breached=True)

    one = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(one, SkipReason)

    for day in days[-3:]:
        _write_drift(flights_paths, day, breached=True)
    fired = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(fired, SensorResult)
    [request] = fired.run_requests
    assert request.tags["driftloop/trigger"] == "monitoring"
    reason = request.tags["driftloop/trigger_reason"]
    policy = flights_contract.retraining
    assert f"of the last {policy.window} days" in reason
    # The decision a person reads in pipelines.status is the one the run carries.
    from driftloop.monitoring.status_section import read_decision

    assert read_decision(flights_paths)["reason"] == reason
    # The run names the policy in force that decided it (here the contract's defaults).
    assert request.tags["driftloop/trigger_policy"] == read_decision(flights_paths)["policy"]
    assert "the defaults" in request.tags["driftloop/trigger_policy"]
    assert all(day in reason for day in days[-3:])
    assert json.loads(fired.cursor)["last_retrain_day"] == days[-1]


def test_cooldown_holds_after_a_retrain(
    flights_contract, flights_paths, dagster_instance, mlflow
) -> None:
    _register_champion(mlflow, "flights")
    days = _days(12)
    _write_feature_days(flights_paths, days)
    for day in days[-4:]:
        _write_drift(flights_paths, day, breached=True)
    cursor = json.dumps({"last_retrain_day": days[-5]})

    held = _evaluate(flights_contract, dagster_instance, flights_paths.root, cursor)

    assert isinstance(held, SkipReason)
    assert "cooldown" in held.skip_message


def test_policy_in_the_contract_changes_the_decision(
    flights_contract, flights_paths, dagster_instance, mlflow
) -> None:
    _register_champion(mlflow, "flights")
    days = _days(10)
    _write_feature_days(flights_paths, days)
    _write_drift(flights_paths, days[-1], breached=True)
    eager = flights_contract.model_copy(
        update={"retraining": TriggerPolicy(n_breaches=1, window=1, cooldown_days=0)}
    )

    assert isinstance(_evaluate(flights_contract, dagster_instance, flights_paths.root), SkipReason)
    fired = _evaluate(eager, dagster_instance, flights_paths.root)
    assert isinstance(fired, SensorResult) and len(fired.run_requests) == 1
