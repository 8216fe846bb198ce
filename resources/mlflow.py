"""MlflowResource: the tracking/registry store (default: SQLite under the data root).

A small ConfigurableResource of our own instead of dagster-mlflow (legacy, and its hook
ends runs early: dagster-io/dagster#21872). MLflow is imported only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster import ConfigurableResource

from driftloop.paths import data_root, default_mlflow_uri
from driftloop.training import registry

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from driftloop.data.contract import Contract
    from driftloop.training.train import TrainingResult


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

    def ui_hint(self, run_id: str, experiment_id: str = "") -> tuple[str, bool]:
        """(link or command, is_url): a URL to the run on a server, else how to open one."""
        uri = self.uri()
        if uri.startswith(("http://", "https://")):
            experiment = experiment_id or self.client().get_run(run_id).info.experiment_id
            return f"{uri.rstrip('/')}/#/experiments/{experiment}/runs/{run_id}", True
        return f"mlflow ui --backend-store-uri {uri}  (run {run_id})", False

    def log_training(
        self,
        contract: Contract,
        result: TrainingResult,
        days: list[str],
        digests: dict[str, str],
        tags: dict[str, str] | None = None,
        source: str | None = None,
    ) -> registry.RegisteredVersion:
        return registry.log_training(
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

    def load_scoring_model(self, model_uri: str) -> Callable[[pd.DataFrame], np.ndarray]:
        return registry.load_scoring_model(model_uri, tracking_uri=self.uri())

    def get_run(self, run_id: str) -> Any:
        return self.client().get_run(run_id)
