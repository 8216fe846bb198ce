"""The retrain path's training step (no Dagster): one window trained, logged and registered."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.data.contract import Contract
from driftloop.faults import fault_point
from driftloop.paths import DatasetPaths
from driftloop.training.mlflow_logging import log_training
from driftloop.training.registry import RegisteredVersion
from driftloop.training.train import load_training_frame, train

if TYPE_CHECKING:
    from driftloop.training.train import TrainingConfig, TrainingResult


@dataclass
class RegisteredTraining:
    """A trained model, its data and its registry identity, to hand along the run."""

    result: TrainingResult
    registered: RegisteredVersion
    days: list[str]
    digests: dict[str, str]


def train_and_register(
    contract: Contract,
    paths: DatasetPaths,
    config: TrainingConfig,
    tracking_uri: str,
    tags: dict[str, str],
    artifact_root: Path | None = None,
) -> RegisteredTraining:
    """Train on the latest features window (ending at config.end_date), log the run to
    MLflow and register the model as the `challenger` of the dataset."""
    frame, days, digests = load_training_frame(contract, paths, config.end_date, config.window_days)
    result = train(contract, frame, config)
    del frame  # the split keeps the rows it needs
    fault_point("training")
    registered = log_training(
        contract,
        result,
        days,
        digests,
        tracking_uri,
        tags,
        artifact_root=artifact_root,
        source=str(paths.table("features")),
    )
    fault_point("after_model")
    return RegisteredTraining(result, registered, days, digests)
