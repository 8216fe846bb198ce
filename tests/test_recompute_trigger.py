"""Recomputed history is not news: the real retrain trigger, a real MLflow champion and
Dagster instance; breaches in the lake fire it only once the newest drift materialization
comes from a run that is not a recompute."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from dagster import (
    AssetKey,
    DagsterInstance,
    MaterializeResult,
    SensorResult,
    SkipReason,
    asset,
    build_sensor_context,
    materialize,
)

from driftloop.data.contract import Contract
from driftloop.data.lake import write_parquet_atomic, write_text_atomic
from driftloop.monitoring.drift_outcome import summary_path
from driftloop.paths import DatasetPaths
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.recompute import RECOMPUTE_TAG
from sensors.retrain_trigger import build_retrain_sensor


def _evaluate(contract: Contract, instance: DagsterInstance, root: Path):
    sensor = build_retrain_sensor(contract, f"{contract.name}_retrain")
    resources = {
        "lake": LakeResource(data_dir=str(root)),
        "mlflow": MlflowResource(data_dir=str(root)),
    }
    return sensor(build_sensor_context(instance=instance, resources=resources))


def test_breaches_written_by_a_recompute_do_not_fire_until_news(
    flights_contract: Contract, flights_paths: DatasetPaths, dagster_instance: DagsterInstance
) -> None:
    mlflow = MlflowResource(data_dir=str(flights_paths.root))
    client = mlflow.client()
    client.create_registered_model("flights")
    source = str(Path(mlflow.artifact_root()) / "placeholder")
    version = client.create_model_version("flights", source=source, run_id=None)
    client.set_registered_model_alias("flights", "champion", version.version)
    days = [(date(2013, 3, 1) + timedelta(days=i)).isoformat() for i in range(10)]
    for day in days:
        write_parquet_atomic(
            pd.DataFrame({"x": [1.0]}), flights_paths.partition_file("features", day)
        )
    for day in days[-3:]:  # a correction's recompute found drift on the last three days
        body = {"day": day, "breached": True, "share_drifted": 0.8}
        write_text_atomic(json.dumps(body), summary_path(flights_paths, day))

    @asset(key=AssetKey(["flights", "drift_report"]))
    def drift_report() -> MaterializeResult:
        return MaterializeResult()

    materialize([drift_report], instance=dagster_instance, tags={RECOMPUTE_TAG: "true"})
    held = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(held, SkipReason) and "recomputed" in held.skip_message

    materialize([drift_report], instance=dagster_instance)  # a new day's drift: news
    fired = _evaluate(flights_contract, dagster_instance, flights_paths.root)
    assert isinstance(fired, SensorResult)
    assert fired.run_requests[0].tags["driftloop/trigger"] == "monitoring"
