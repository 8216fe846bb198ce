"""The code location: one asset graph per contract in the contracts folder."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, in_process_executor

from assets.factory import build_dataset_definitions
from driftloop.contract import load_contracts
from driftloop.paths import contracts_dir
from resources.lake import LakeResource
from resources.mlflow import MlflowResource


def _env(name: str) -> EnvVar | None:
    """An EnvVar when the variable is set; otherwise the resource falls back to its default."""
    return EnvVar(name) if os.environ.get(name) else None


def build_definitions() -> Definitions:
    contracts = load_contracts(contracts_dir())
    data_dir = _env("DRIFTLOOP_DATA_DIR")
    resources = {
        "lake": LakeResource(data_dir=data_dir),
        "mlflow": MlflowResource(tracking_uri=_env("MLFLOW_TRACKING_URI"), data_dir=data_dir),
    }
    # Our steps form short chains and import heavy libraries: one process per run is
    # faster than one per step (see README, Performance).
    shared = Definitions(resources=resources, executor=in_process_executor)
    return Definitions.merge(shared, *(build_dataset_definitions(c) for c in contracts.values()))


defs = build_definitions()
