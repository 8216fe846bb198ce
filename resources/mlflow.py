"""MlflowResource: the tracking/registry store (default: SQLite under the data root).

A small ConfigurableResource of our own instead of dagster-mlflow (legacy, and its hook
ends runs early: dagster-io/dagster#21872). MLflow is imported only when used. The UI links
point at the tracking server when there is one, else at $DRIFTLOOP_MLFLOW_UI_URL (where
`mlflow ui` serves the local store; default http://127.0.0.1:5000).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dagster import ConfigurableResource

from driftloop.paths import data_root, default_mlflow_uri
from driftloop.training import registry
from driftloop.training.mlflow_logging import log_training

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from driftloop.data.contract import Contract
    from driftloop.training.train import TrainingResult

MLFLOW_UI_URL_ENV = "DRIFTLOOP_MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"


def is_server_uri(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def mlflow_ui_base(tracking_uri: str) -> str:
    """The MLflow UI's address: the tracking server itself, else the configured UI."""
    if is_server_uri(tracking_uri):
        return tracking_uri.rstrip("/")
    return os.environ.get(MLFLOW_UI_URL_ENV, DEFAULT_MLFLOW_UI_URL).rstrip("/")


def mlflow_run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of one run."""
    return f"{mlflow_ui_base(tracking_uri)}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_model_version_url(tracking_uri: str, name: str, version: str | int) -> str:
    """The MLflow UI page of one registered model version."""
    return f"{mlflow_ui_base(tracking_uri)}/#/models/{quote(name, safe='')}/versions/{version}"


class MlflowResource(ConfigurableResource):
    """Tracking URI ($MLFLOW_TRACKING_URI, else sqlite:///<data root>/mlflow.db); the
    registry uses the same store. Local stores keep artifacts in <data root>/mlartifacts."""

    tracking_uri: str | None = None
    data_dir: str | None = None  # data root for artifacts; default $DRIFTLOOP_DATA_DIR

    def uri(self) -> str:
        return self.tracking_uri or default_mlflow_uri(data_root(self.data_dir))

    def artifact_root(self) -> Path:
        return data_root(self.data_dir) / "mlartifacts"

    def client(self) -> MlflowClient:
        return registry.make_client(self.uri())

    def run_url(self, run_id: str, experiment_id: str = "") -> str:
        """The MLflow UI page of a run (Dagster metadata: `MetadataValue.url`)."""
        experiment = experiment_id or self.client().get_run(run_id).info.experiment_id
        return mlflow_run_url(self.uri(), experiment, run_id)

    def model_version_url(self, name: str, version: str | int) -> str:
        """The MLflow UI page of a registered model version."""
        return mlflow_model_version_url(self.uri(), name, version)

    def log_training(
        self,
        contract: Contract,
        result: TrainingResult,
        days: list[str],
        digests: dict[str, str],
        tags: dict[str, str] | None = None,
        source: str | None = None,
    ) -> registry.RegisteredVersion:
        return log_training(
            contract,
            result,
            days,
            digests,
            self.uri(),
            tags,
            artifact_root=self.artifact_root(),
            source=source,
        )

    def version_for_alias(self, name: str, alias: str) -> ModelVersion | None:
        return registry.version_for_alias(self.client(), name, alias)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        registry.set_alias(self.client(), name, alias, version)

    def get_run(self, run_id: str) -> Any:
        return self.client().get_run(run_id)
