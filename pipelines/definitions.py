"""The code location: one asset graph per contract in the contracts folder."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, in_process_executor

from assets.factory import build_dataset_definitions
from driftloop.data.contract import load_contracts
from driftloop.paths import contracts_dir
from resources.alerts import AlertsResource
from resources.lake import LakeResource
from resources.mlflow import MlflowResource
from sensors.alerts import build_run_failure_alert_sensor


def _env(name: str) -> EnvVar | None:
    """An EnvVar when the variable is set; otherwise the resource falls back to its default."""
    return EnvVar(name) if os.environ.get(name) else None


def build_definitions() -> Definitions:
    contracts = load_contracts(contracts_dir())
    data_dir = _env("DRIFTLOOP_DATA_DIR")
    resources = {
        "lake": LakeResource(data_dir=data_dir),
        "mlflow": MlflowResource(tracking_uri=_env("MLFLOW_TRACKING_URI"), data_dir=data_dir),
        "alerts": AlertsResource.from_environment(),
    }
    # Every run executes its steps in the run's own process. Dagster's default (multiprocess)
    # executor starts a process per step, and each one imports dagster, loads this code
    # location again and imports the step's libraries (mlflow, lightgbm, duckdb): seconds per
    # step. Our steps form chains (retrain: model -> eval_report -> promotion; daily: raw_data
    # -> features -> predictions -> drift_report and performance, the only pair that could
    # overlap, for less than a new process costs), and on 2 cores concurrent runs already
    # share the cores (pipelines/instance.py). Set here rather than per
    # job so that it is also the executor of the implicit asset jobs: `dagster asset
    # materialize`, materializations and backfills launched from the UI, and sensors' asset
    # selections. Compute logs are still captured per run, run tags (the training limit) and
    # asset checks are unaffected. See README, Performance.
    shared = Definitions(
        resources=resources,
        executor=in_process_executor,
        sensors=[build_run_failure_alert_sensor()],
    )
    return Definitions.merge(shared, *(build_dataset_definitions(c) for c in contracts.values()))


defs = build_definitions()
