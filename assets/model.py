"""<dataset>/model: train on the latest features window, log to MLflow, register a challenger.

Unpartitioned: each materialization trains on the last `window_days` features partitions
(ending at `end_date`, default the latest) and registers a new version of the model named
after the dataset with the alias `challenger`. The model's identity (MLflow run id,
version, store) goes into the materialization's metadata, where eval_report and promotion
of the same run read it. The step first takes the dataset's retrain lock (one retrain
between training and its gate decision at a time) and checks that the MLflow store is the
one the ledger was written against.
"""

# No `from __future__ import annotations` here: Dagster reads the config class from the
# asset function's annotation, and that class is made per contract inside build().

import math
from datetime import date
from typing import TYPE_CHECKING, Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    Config,
    Definitions,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)
from pydantic import Field

from assets.cost import measured_step
from assets.job_names import TRAINING_POOL
from assets.partitions import ONE_RUN
from assets.retrain_run import fail, identity_metadata, run_in_progress
from driftloop.data.contract import Contract
from driftloop.evaluation.promotion import PromotionError, check_store
from driftloop.training.lightgbm_model import LIGHTGBM_DEFAULTS, RUN_PARAMS
from driftloop.training.retrain_lock import RetrainBusy, acquire
from resources.lake import LakeResource
from resources.mlflow import MlflowResource

if TYPE_CHECKING:
    from driftloop.training.retrain import RegisteredTraining
    from driftloop.training.train import TrainingConfig


class ModelConfig(Config):
    """Run config of <dataset>/model; build() sets the window defaults from the contract."""

    window_days: int = Field(default=60, ge=2, description="Features partitions to train on")
    holdout_days: int = Field(default=7, ge=1, description="Most recent days held out")
    validation_days: int = Field(default=7, ge=1, description="Days before the holdout")
    end_date: str = Field(default="", description="Last day (YYYY-MM-DD); empty = latest")
    model_kind: str = Field(default="lightgbm", description="lightgbm or baseline")
    num_leaves: int = LIGHTGBM_DEFAULTS["num_leaves"]
    learning_rate: float = LIGHTGBM_DEFAULTS["learning_rate"]
    n_estimators: int = LIGHTGBM_DEFAULTS["n_estimators"]
    min_child_samples: int = LIGHTGBM_DEFAULTS["min_child_samples"]
    feature_fraction: float = LIGHTGBM_DEFAULTS["feature_fraction"]
    lambda_l2: float = LIGHTGBM_DEFAULTS["lambda_l2"]
    max_depth: int = LIGHTGBM_DEFAULTS["max_depth"]
    early_stopping_rounds: int = LIGHTGBM_DEFAULTS["early_stopping_rounds"]
    num_threads: int = LIGHTGBM_DEFAULTS["num_threads"]
    seed: int = 42
    search_trials: int = Field(default=0, ge=0, description="Random search trials (0 = off)")
    search_time_budget_s: float = Field(default=0.0, ge=0, description="0 = no time limit")
    refit_on_window: bool = Field(
        default=True,
        description="Serve the refit on the whole window (the gate judges the split model)",
    )

    def training_config(self) -> "TrainingConfig":
        from driftloop.training.train import TrainingConfig

        end = date.fromisoformat(self.end_date) if self.end_date.strip() else None
        return TrainingConfig(
            window_days=self.window_days,
            holdout_days=self.holdout_days,
            validation_days=self.validation_days,
            end_date=end,
            model_kind=self.model_kind,
            params=self.lightgbm_params() if self.model_kind == "lightgbm" else {},
            seed=self.seed,
            search_trials=self.search_trials,
            search_time_budget_s=self.search_time_budget_s,
            refit_on_window=self.refit_on_window,
        )

    def lightgbm_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RUN_PARAMS}


def model_config_class(contract: Contract) -> type[ModelConfig]:
    """ModelConfig whose window defaults are the contract's `training` block."""
    training = contract.training

    class DatasetModelConfig(ModelConfig):
        window_days: int = Field(default=training.window_days, ge=2)
        holdout_days: int = Field(default=training.holdout_days, ge=1)
        validation_days: int = Field(default=training.validation_days, ge=1)
        refit_on_window: bool = training.refit_on_window

    DatasetModelConfig.__name__ = DatasetModelConfig.__qualname__ = (
        f"{contract.name.title().replace('_', '')}ModelConfig"
    )
    return DatasetModelConfig


def _table(importance: dict[str, float]) -> MetadataValue:
    rows = sorted(importance.items(), key=lambda kv: -kv[1])
    return MetadataValue.table(
        records=[TableRecord({"feature": k, "importance": round(v, 6)}) for k, v in rows],
        schema=TableSchema(
            columns=[
                TableColumn("feature", "string"),
                TableColumn("importance", "float", description="share of total gain"),
            ]
        ),
    )


def _metadata(trained: "RegisteredTraining", links: dict[str, MetadataValue]) -> dict[str, Any]:
    """The materialization's metadata: the model's identity first (read back by eval_report
    and promotion of the same run), then what it was trained on and how well it did."""
    result, registered, days = trained.result, trained.registered, trained.days
    metadata: dict[str, Any] = {
        "model_name": registered.model_name,
        **identity_metadata(registered),
        "model_uri": registered.model_uri,
        **links,
        "baseline_model_uri": registered.baseline_model_uri,
        "primary_metric": result.primary_metric,
        "partitions": f"{days[0]}..{days[-1]} ({len(days)} days)",
        "train_days": f"{result.train_days[0]}..{result.train_days[-1]}",
        "valid_days": f"{result.valid_days[0]}..{result.valid_days[-1]}",
        "holdout_days": f"{result.holdout_days[0]}..{result.holdout_days[-1]}",
        "rows_train": result.rows["train"],
        "rows_valid": result.rows["valid"],
        "rows_holdout": result.rows["holdout"],
        "train_seconds": round(result.train_seconds, 3),
        "rows_per_second": round(result.rows_per_second, 1),
        "search_trials_run": len(result.trials),
        # The registered model is refitted on the whole window; the gate judges the split one.
        "refit_on_window": result.evaluated is not None,
        "feature_importance": _table(result.feature_importance),
    }
    for prefix, values in (
        ("holdout", result.holdout_metrics),
        ("baseline_holdout", result.baseline_holdout_metrics),
        ("valid", result.valid_metrics),
    ):
        for metric, value in values.items():
            if math.isfinite(value):  # NaN (e.g. one-class holdout) is not shown
                metadata[f"{prefix}_{metric}"] = float(value)
    return metadata


def build(contract: Contract) -> Definitions:
    name = contract.name
    config_class = model_config_class(contract)

    @asset(
        key=AssetKey([name, "model"]),
        deps=[AssetKey([name, "features"])],
        group_name=name,
        backfill_policy=ONE_RUN,
        pool=TRAINING_POOL,
        kinds={"python", "mlflow"},
        description=(
            f"Trains a {contract.task.value} model of {name} on the latest features window, "
            f"logs it to MLflow and registers it as '{name}' with alias 'challenger'."
        ),
    )
    @measured_step(name, "model")
    def model(
        context: AssetExecutionContext,
        config: config_class,
        lake: LakeResource,
        mlflow: MlflowResource,
    ) -> MaterializeResult:
        # Imported here: the training stack is heavy and only this step needs it.
        from driftloop.training.retrain import train_and_register

        paths = lake.paths(name)
        try:
            check_store(paths, mlflow.client(), name)
            acquire(paths, context.run_id, lambda h: run_in_progress(context.instance, h))
        except (RetrainBusy, PromotionError) as error:
            raise fail(error) from error
        trained = train_and_register(
            contract,
            paths,
            config.training_config(),
            mlflow.uri(),
            {"dagster.run_id": context.run_id},
            artifact_root=mlflow.artifact_root(),
        )
        result, registered, days = trained.result, trained.registered, trained.days
        primary = result.primary_metric
        context.log.info(
            f"{name}: trained {result.model.name} on {result.rows['train']} rows of "
            f"{days[0]}..{days[-1]}; holdout {primary} {result.holdout_metrics[primary]:.4f} "
            f"vs baseline {result.baseline_holdout_metrics[primary]:.4f}; registered "
            f"v{registered.version} (run {registered.run_id}) as 'challenger'"
        )
        links = {
            "mlflow_run": MetadataValue.url(
                mlflow.run_url(registered.run_id, registered.experiment_id)
            ),
            "mlflow_model_version": MetadataValue.url(
                mlflow.model_version_url(registered.model_name, registered.version)
            ),
        }
        return MaterializeResult(metadata=_metadata(trained, links))

    return Definitions(assets=[model])
