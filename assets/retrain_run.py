"""What one retraining run hands along: the model its training step registered, and its lock.

The training step records the model's identity (MLflow run id, version, store) in its
materialization's metadata; eval_report and promotion read it back from the event log
of their own run, so each decides the model its own run trained, whatever the
`challenger` alias says meanwhile. Run by themselves, they take the latest trained model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dagster import AssetKey, DagsterRunStatus, Failure

from driftloop.names import CHALLENGER
from driftloop.processes import token_alive
from driftloop.training.registry import RegisteredVersion, aliased

if TYPE_CHECKING:
    from dagster import AssetExecutionContext, DagsterInstance

    from driftloop.training.retrain_lock import Holder

IN_PROGRESS = (
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
)
# Metadata keys of the model's materialization that name the model.
IDENTITY_KEYS = ("model_version", "mlflow_run_id", "store_id", "baseline_run_id", "model_kind")


def identity_metadata(model: RegisteredVersion) -> dict[str, str]:
    return {
        "model_version": model.version,
        "mlflow_run_id": model.run_id,
        "store_id": model.store_id,
        "baseline_run_id": model.baseline_run_id,
        "model_kind": model.model_kind,
    }


def _from_metadata(name: str, metadata: dict[str, Any]) -> RegisteredVersion:
    value = {
        k: str(getattr(metadata.get(k), "value", metadata.get(k)) or "") for k in IDENTITY_KEYS
    }
    return RegisteredVersion(
        model_name=name,
        version=value["model_version"],
        run_id=value["mlflow_run_id"],
        model_uri=f"models:/{name}/{value['model_version']}",
        baseline_run_id=value["baseline_run_id"],
        store_id=value["store_id"],
        model_kind=value["model_kind"],
    )


def trained_model(
    context: AssetExecutionContext, name: str
) -> tuple[RegisteredVersion | None, str]:
    """(the model to decide, where it came from): this run's training step's model, else the
    latest trained one, else (a version registered outside Dagster) the challenger alias."""
    key = AssetKey([name, "model"])
    records = context.instance.fetch_materializations(key, limit=100).records
    own = [r for r in records if r.run_id == context.run_id]
    candidates = [(own[0], "this run")] if own else []
    candidates += [(records[0], "the latest training run")] if records else []
    for record, source in candidates:
        metadata = dict(record.asset_materialization.metadata)
        if "mlflow_run_id" in metadata:
            return _from_metadata(name, metadata), f"{source} ({record.run_id})"
    client = context.resources.mlflow.client()
    challenger = aliased(client, name, CHALLENGER)
    if challenger is None:
        return None, "no trained model"
    # A version registered outside Dagster: its identity as the registry has it now.
    return challenger, "the challenger alias (no training run recorded one)"


def run_in_progress(instance: DagsterInstance, holder: Holder) -> bool:
    """Whether the run holding the retrain lock is still working: its Dagster run is in
    progress and the process that took the lock has not died."""
    run = instance.get_run_by_id(holder.owner)
    if run is not None and run.status not in IN_PROGRESS:
        return False
    return token_alive(holder.token) is not False


def fail(error: Exception) -> Failure:
    """A clear step failure from a core error (its message says what to do)."""
    return Failure(description=str(error))
