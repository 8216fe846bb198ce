"""The code location: one asset graph per contract in the contracts folder."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar

from driftloop.data.contract import load_contracts
from driftloop.paths import contracts_dir
from pipelines.executors import executor_from_env
from pipelines.factory import build_dataset_definitions
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
    # One executor for every job, set here rather than per job so that it is also the
    # executor of the implicit asset jobs: `dg launch --assets`, materializations and
    # backfills launched from the UI, and sensors' asset selections. In-process unless
    # $DRIFTLOOP_EXECUTOR says otherwise (pipelines/executors.py says when each pays).
    shared = Definitions(
        resources=resources,
        executor=executor_from_env(),
        sensors=[build_run_failure_alert_sensor()],
    )
    return Definitions.merge(shared, *(build_dataset_definitions(c) for c in contracts.values()))


defs = build_definitions()
