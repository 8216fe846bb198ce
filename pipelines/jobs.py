"""The jobs of one dataset: the daily path (features to monitoring) and the retraining path.

Ingestion is its own job (pipelines/ingest_job.py): it writes the raw days a batch of files
fills, and the downstream sensor launches the daily job for the days whose inputs changed.

Every job uses the code location's executor (in-process unless $DRIFTLOOP_EXECUTOR says
otherwise: pipelines/executors.py).
"""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from assets.job_names import AssetJob
from assets.partitions import daily_partitions
from driftloop.data.contract import Contract
from driftloop.names import TRAINING_TAG

DAILY_ASSETS = ("features", "predictions", "drift_report", "performance")
CATCH_UP_ASSETS = ("predictions", "drift_report", "performance")
PERFORMANCE_ASSETS = ("performance",)
RETRAIN_ASSETS = ("model", "eval_report", "promotion")


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


def _partitioned_job(
    contract: Contract, name: str, assets: tuple[str, ...], description: str
) -> AssetJob:
    return define_asset_job(
        name,
        selection=_keys(contract, assets),
        partitions_def=daily_partitions(contract),
        description=f"{contract.name}: {description}",
    )


def build_daily_job(contract: Contract) -> AssetJob:
    """Days whose raw data is new or changed: featurize, score with the champion, watch drift."""
    return _partitioned_job(
        contract,
        daily_job_name(contract),
        DAILY_ASSETS,
        "featurize, score and monitor days whose raw data is new or changed.",
    )


def build_catch_up_job(contract: Contract) -> AssetJob:
    """Days that waited for a champion, or whose labels have since arrived."""
    return _partitioned_job(
        contract, catch_up_job_name(contract), CATCH_UP_ASSETS, "score and monitor days behind."
    )


def build_performance_job(contract: Contract) -> AssetJob:
    """Realised performance of days whose labels have arrived since they were scored."""
    return _partitioned_job(
        contract,
        performance_job_name(contract),
        PERFORMANCE_ASSETS,
        "realised performance once labels are due.",
    )


def build_retrain_job(contract: Contract) -> AssetJob:
    """Train a challenger on the latest window, evaluate it, and run the promotion gate."""
    return define_asset_job(
        retrain_job_name(contract),
        selection=_keys(contract, RETRAIN_ASSETS),
        tags={TRAINING_TAG: contract.name},
        description=f"{contract.name}: train a challenger, evaluate it, gate its promotion.",
    )
