"""The model registry (no Dagster): MLflow clients, experiments, versions, aliases, store id.

Aliases, never stages (deprecated in MLflow 3): `challenger` = the newest trained version,
`champion` = the version serving (their names are in driftloop.names). Logging a training
run is in driftloop.training.mlflow_logging, loading a model for scoring in
driftloop.training.model_loading.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from driftloop.paths import data_root
from driftloop.stores import check_mlflow_store

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


MODEL_NAME = "model"  # name of the logged model in the run
# With a refit on the whole window: the split model the gate judges, logged beside it,
# and the version tag that points at it.
GATE_MODEL_NAME = "gate_model"
GATE_MODEL_TAG = "driftloop.gate_model_uri"
# The token of the process that logs a run (driftloop.processes): a run left RUNNING by a
# process that is gone is ended by the reconciler.
PROCESS_TAG = "driftloop.process"


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version and its identity: the MLflow run that logged it, in which store."""

    model_name: str
    version: str
    run_id: str
    model_uri: str  # models:/<name>/<version>
    experiment_id: str = ""
    baseline_model_uri: str = ""  # runs:/<baseline run id>/model
    baseline_run_id: str = ""
    store_id: str = ""
    model_kind: str = ""


def is_local_store(tracking_uri: str) -> bool:
    """Not a tracking server: the artifacts are ours to place (under the data root).

    A server (http/https/databricks) chooses its own artifact store.
    """
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


@contextmanager
def using_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at a URI, then back at the
    environment's.

    The fluent API (`mlflow.start_run`, `log_model`) has no client argument, so its URIs are
    set through MLflow's public setters for the block. Nothing in the project sets them
    otherwise, so on exit they are unset again and the saved $MLFLOW_TRACKING_URI and
    $MLFLOW_REGISTRY_URI (which the setters overwrite or delete) restored: the URIs come
    from the environment as before. Everything else uses a client made for its URI
    (`make_client`).
    """
    import mlflow

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        # None is "not set": MLflow reads the environment again (and deletes the variables,
        # restored next).
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
        mlflow.set_registry_uri(None)  # type: ignore[arg-type]
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def make_client(tracking_uri: str) -> MlflowClient:
    from mlflow import MlflowClient

    if not tracking_uri.startswith("sqlite:///"):
        return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    database = Path(tracking_uri.removeprefix("sqlite:///"))
    with _store_creation_lock(database) as first_use:
        if first_use:  # a corrupted or foreign file: a clear error instead of SQLAlchemy's
            check_mlflow_store(tracking_uri)
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        if first_use:  # later clients of this process find both stores' tables in place
            client.search_registered_models(max_results=1)  # creates the registry's store too
    return client


_READY_STORES: set[Path] = set()


@contextmanager
def _store_creation_lock(database: Path) -> Iterator[bool]:
    """Serialise the first use of a SQLite store across processes; yields whether this is
    this process's first use of it (the caller then touches both stores).

    MLflow creates a fresh store's tables when a client first touches it, and two
    processes doing that at once (a run and a sensor, say) fail with "table ... already
    exists". Once the tables exist, concurrent use is fine: each process locks once.
    """
    import fcntl

    if database in _READY_STORES:
        yield False
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".init-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY_STORES.add(database)


def experiment_id_for(
    client: MlflowClient, dataset: str, tracking_uri: str, artifact_root: Path | None = None
) -> str:
    """The dataset's experiment, created with its artifacts under the data root if local."""
    experiment = client.get_experiment_by_name(dataset)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if is_local_store(tracking_uri):
        root = artifact_root or data_root() / "mlartifacts"
        location = (Path(root) / dataset).resolve().as_uri()
    return client.create_experiment(dataset, artifact_location=location)


def version_for_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at, or None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def set_alias(client: MlflowClient, name: str, alias: str, version: str | int) -> None:
    """Point an alias at a version (moving it if it pointed elsewhere)."""
    client.set_registered_model_alias(name, alias, str(version))


def store_id(client: MlflowClient, name: str) -> str | None:
    """The identity of the store holding the registered model `name` (None: no such model).

    It is the registered model's creation time: a store that is deleted and started
    again, or replaced by another, creates the model anew, so its versions (numbered from
    1 again) are never taken for the ones a ledger entry names.
    """
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return f"{name}@{model.creation_timestamp}"


def version_of_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version of `name` registered from the run `run_id` (the newest if several)."""
    if not run_id:
        return None
    found = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    return max(found, key=lambda v: int(v.version)) if found else None


def describe(client: MlflowClient, version: ModelVersion) -> RegisteredVersion:
    """A registry version as a RegisteredVersion (its identity and where it came from)."""
    tags = dict(version.tags or {})
    return RegisteredVersion(
        model_name=version.name,
        version=str(version.version),
        run_id=version.run_id or "",
        model_uri=f"models:/{version.name}/{version.version}",
        baseline_model_uri=tags.get("driftloop.baseline_run_model_uri", ""),
        baseline_run_id=tags.get("driftloop.baseline_run_id", ""),
        store_id=store_id(client, version.name) or "",
        model_kind=tags.get("driftloop.model_kind", ""),
    )


def aliased(client: MlflowClient, name: str, alias: str) -> RegisteredVersion | None:
    """The version an alias points at, described (None without one)."""
    version = version_for_alias(client, name, alias)
    return None if version is None else describe(client, version)


def register_run_model(
    client: MlflowClient, name: str, run_id: str, extra_tags: dict[str, str] | None = None
) -> RegisteredVersion:
    """The registry version of the model logged by `run_id` (e.g. a baseline), registered
    now with the run's driftloop tags if it is not yet: calling twice registers once."""
    existing = version_of_run(client, name, run_id)
    if existing is None:
        run = client.get_run(run_id)
        tags = {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")}
        tags.pop(PROCESS_TAG, None)
        tags |= extra_tags or {}
        existing = client.create_model_version(
            name, f"runs:/{run_id}/{MODEL_NAME}", run_id=run_id, tags=tags
        )
    return describe(client, existing)
