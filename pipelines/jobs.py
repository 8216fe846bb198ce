"""The jobs of one dataset: the daily path (ingest to monitoring) and the retraining path."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from assets.partitions import daily_partitions
from driftloop.contract import Contract

DAILY_ASSETS = ("raw_data", "features", "predictions", "drift_report", "performance")
CATCH_UP_ASSETS = ("predictions", "drift_report", "performance")
PERFORMANCE_ASSETS = ("performance",)
RETRAIN_ASSETS = ("model", "eval_report", "promotion")
TRAINING_TAG = "driftloop/training"  # limited to one run per dataset (pipelines/instance.py)


def _keys(contract: Contract, names: tuple[str, ...]) -> AssetSelection:
    return AssetSelection.assets(*[[contract.name, name] for name in names])


def daily_job_name(contract: Contract) -> str:
    return f"{contract.name}_daily"


def catch_up_job_name(contract: Contract) -> str:
    return f"{contract.name}_score"


def performance_job_name(contract: Contract) -> str:
    return f"{contract.name}_performance"


def retrain_job_name(contract: Contract) -> str:
    return f"{contract.name}_retrain"


def build_daily_job(contract: Contract) -> UnresolvedAssetJobDefinition:
    """New days: ingest, validate, featurize, score with the champion, watch drift."""
    return define_asset_job(
        daily_job_name(contract),
        selection=_keys(contract, DAILY_ASSETS),
        partitions_def=daily_partitions(contract),
        description=f"{contract.name}: ingest landed files and score and monitor their days.",
    )


def build_catch_up_job(contract: Contract) -> UnresolvedAssetJobDefinition:
    """Days that waited for a champion, or whose labels have since arrived."""
    return define_asset_job(
        catch_up_job_name(contract),
        selection=_keys(contract, CATCH_UP_ASSETS),
        partitions_def=daily_partitions(contract),
        description=f"{contract.name}: score and monitor days that are behind.",
    )


def build_performance_job(contract: Contract) -> UnresolvedAssetJobDefinition:
    """Realised performance of days whose labels have arrived since they were scored."""
    return define_asset_job(
        performance_job_name(contract),
        selection=_keys(contract, PERFORMANCE_ASSETS),
        partitions_def=daily_partitions(contract),
        description=f"{contract.name}: realised performance once labels are due.",
    )


def build_retrain_job(contract: Contract) -> UnresolvedAssetJobDefinition:
    """Train a challenger on the latest window, evaluate it, and run the promotion gate."""
    return define_asset_job(
        retrain_job_name(contract),
        selection=_keys(contract, RETRAIN_ASSETS),
        tags={TRAINING_TAG: contract.name},
        description=f"{contract.name}: train a challenger, evaluate it, gate its promotion.",
    )
