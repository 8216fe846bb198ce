"""MLflow logging and the model registry (no Dagster): runs, dataset inputs, pyfunc, aliases.

Layout of one training run (experiment = dataset name, artifacts under
<data root>/mlartifacts/<dataset> for a local store):
  params   configuration and the model's parameters as used
  metrics  holdout_*, valid_*, baseline_holdout_*, baseline_valid_*, train_seconds, ...
  inputs   mlflow.data datasets: training, validation, evaluation (holdout) rows
  models   "model" (registered as <dataset>, alias challenger) and "baseline" (not
           registered), both pyfunc: predict(DataFrame of contract.features) -> scores
  artifacts feature_importance.{json,csv,png}, data/partitions.json, split.json,
           search/trials.json, holdout/predictions.parquet
Aliases, never stages (deprecated in MLflow 3): challenger = newest trained version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.data.contract import Contract
from driftloop.names import CHALLENGER
from driftloop.paths import PROJECT_ROOT, data_root

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from driftloop.training.train import TrainingResult

MODEL_NAME = "model"  # name of the logged model in the run
BASELINE_NAME = "baseline"
PACKAGE_DIR = Path(__file__).resolve().parent.parent

# Distributions the pyfunc needs at load time. Listing them skips MLflow's requirement
# inference, which loads the model again in a subprocess (seconds per log_model).
_REQUIREMENTS = ("mlflow", "lightgbm", "scikit-learn", "pandas", "numpy", "pydantic")
_REQUIREMENTS += ("PyYAML", "cloudpickle")


@dataclass(frozen=True)
class RegisteredVersion:
    model_name: str
    version: str
    run_id: str
    model_uri: str  # models:/<name>/<version>
    experiment_id: str = ""
    baseline_model_uri: str = ""  # runs:/<run_id>/baseline


def is_local_store(tracking_uri: str) -> bool:
    """Not a tracking server: the artifacts are ours to place (under the data root).

    A server (http/https/databricks) chooses its own artifact store.
    """
    return not tracking_uri.startswith(("http://", "https://", "databricks"))


@contextmanager
def using_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at a URI, then restore it.

    mlflow.set_tracking_uri(None) also deletes $MLFLOW_TRACKING_URI, so the environment
    is saved and restored too.
    """
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    saved_tracking = tracking_utils._tracking_uri
    saved_registry = registry_utils._registry_uri
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved_tracking)
        mlflow.set_registry_uri(saved_registry)
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


def source_hash() -> str:
    """sha256 of the driftloop package's Python sources (path + content, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def code_version() -> str:
    """The git commit of the project if it is a repository, else src-<hash of the sources>."""
    try:
        out = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        commit = out.stdout.strip()
        if commit:
            return commit
    except (OSError, subprocess.SubprocessError):
        pass
    return "src-" + source_hash()[:16]


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


def _requirements() -> list[str]:
    pins = []
    for name in _REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return pins


@contextmanager
def _quiet_pyfunc() -> Iterator[None]:
    """Silence MLflow's advice about type hints and cloudpickle: we pass an explicit
    signature, and the pickled model is our own code."""
    import logging

    pyfunc_logger = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_logger.level
    pyfunc_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Tt]ype hint", category=UserWarning)
            yield
    finally:
        pyfunc_logger.setLevel(level)


def _pyfunc_wrapper(model: Any) -> Any:
    """A PythonModel around a TabularModel: predict(DataFrame) -> 1-D float scores."""
    import mlflow.pyfunc
    import pandas as pd

    # Defined here so mlflow stays a lazy import; cloudpickle stores the class by value.
    class TabularPyfunc(mlflow.pyfunc.PythonModel):
        # The logged signature validates inputs; skip MLflow's type-hint based wrapping.
        _skip_type_hint_validation = True

        def __init__(self, tabular: Any) -> None:
            self.tabular = tabular

        # No type hints: MLflow would try (and fail) to derive a schema from them.
        def predict(self, context, model_input, params=None):
            frame = model_input
            if not isinstance(frame, pd.DataFrame):
                frame = pd.DataFrame(frame)
            return self.tabular.predict(frame)

    return TabularPyfunc(model)


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _day_range(days: list[str]) -> str:
    return f"{days[0]}..{days[-1]}" if days else ""


def training_tags(
    contract: Contract,
    result: TrainingResult,
    days: list[str],
    digests: dict[str, str],
    run_id: str,
    extra: dict[str, str],
) -> dict[str, str]:
    """Tags set on the run and on the registered version (the gate and ledger read them)."""
    primary = result.primary_metric
    digest_json = json.dumps(dict(sorted(digests.items())), separators=(",", ":"))
    # dagster.run_id comes from `extra` (the asset passes its run id).
    tags = {
        "dagster.partitions": _day_range(days),
        "code_version": code_version(),
        "driftloop.source_hash": source_hash(),
        "driftloop.dataset": contract.name,
        "driftloop.task": contract.task.value,
        "driftloop.model_kind": result.model.name,
        "driftloop.train_days": _day_range(result.train_days),
        "driftloop.valid_days": _day_range(result.valid_days),
        "driftloop.holdout_start": result.holdout_days[0],
        "driftloop.holdout_end": result.holdout_days[-1],
        "driftloop.baseline_run_model_uri": f"runs:/{run_id}/{BASELINE_NAME}",
        "driftloop.primary_metric": primary,
        "driftloop.holdout_primary": repr(result.holdout_metrics[primary]),
        "driftloop.baseline_holdout_primary": repr(result.baseline_holdout_metrics[primary]),
        "driftloop.data_digest": hashlib.sha256(digest_json.encode()).hexdigest(),
        # Whole map when it fits a tag comfortably; always in data/partitions.json.
        "driftloop.partition_digests": digest_json if len(digest_json) <= 5000 else "see artifact",
    }
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def _log_importance(importance: dict[str, float]) -> None:
    import mlflow

    ordered = dict(sorted(importance.items(), key=lambda kv: -kv[1]))
    mlflow.log_dict(ordered, "feature_importance.json")
    csv = "feature,importance\n" + "".join(f"{k},{v:.8g}\n" for k, v in ordered.items())
    mlflow.log_text(csv, "feature_importance.csv")
    try:
        # The object API needs no pyplot and no global backend switch.
        from matplotlib.figure import Figure
    except ImportError:
        return
    names = list(ordered)[:30][::-1]
    figure = Figure(figsize=(7, 0.28 * len(names) + 1.2))
    axes = figure.add_subplot()
    axes.barh(names, [ordered[n] for n in names])
    axes.set_xlabel("share of total gain" if names else "")
    axes.set_title("Feature importance")
    figure.tight_layout()
    mlflow.log_figure(figure, "feature_importance.png")


def dataset_schema(frame: pd.DataFrame) -> Any:
    """The schema MLflow would infer for a pandas dataset, in milliseconds.

    MLflow's own inference visits every value of every text column in Python (about 90 s
    for a million rows of flights). Column types come from a sample instead, and the
    `required` flags from vectorised null checks of the whole frame: the same schema.
    """
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    has_nulls = frame.isna().any()
    sample = infer_signature(frame.head(1000)).inputs
    return Schema(
        [
            ColSpec(spec.type, spec.name, required=not bool(has_nulls[spec.name]))
            for spec in sample.inputs
        ]
    )


def split_digest(digests: dict[str, str], days: list[str]) -> str:
    """A dataset digest from the sha256 of the split's partition files.

    MLflow's own pandas digest maps a Python function over every cell of the frame (about
    100 s for 10M rows); the files' hashes, computed anyway for provenance, identify the
    rows at least as well.
    """
    joined = json.dumps({d: digests.get(d, "") for d in days}, sort_keys=True)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


def _log_datasets(
    contract: Contract, result: TrainingResult, digests: dict[str, str], source: str | None
) -> None:
    import mlflow

    parts = [
        ("training", result.split.train, result.train_days),
        ("validation", result.split.valid, result.valid_days),
        ("evaluation", result.split.holdout, result.holdout_days),
    ]
    # Each split's frame as it is (the features table's columns: ids, event_time, day,
    # features, label); selecting columns of a 10M-row training set would copy gigabytes.
    for context, frame, part_days in parts:
        with warnings.catch_warnings():
            # A local folder matches two equivalent source kinds; MLflow warns, then picks one.
            warnings.filterwarnings("ignore", message=".*interpreted in multiple ways")
            dataset = mlflow.data.from_pandas(
                frame,
                source=source,
                targets="label",
                name=f"{contract.name}/features[{_day_range(part_days)}]",
                digest=split_digest(digests, part_days),
            )
        # Pre-filled cached property: MLflow reads it when the input is logged.
        dataset.__dict__["schema"] = dataset_schema(frame)
        mlflow.log_input(
            dataset,
            context=context,
            tags={"partitions": _day_range(part_days), "days": str(len(part_days))},
        )


def log_training(
    contract: Contract,
    result: TrainingResult,
    days: list[str],
    digests: dict[str, str],
    tracking_uri: str,
    tags: dict[str, str] | None = None,
    *,
    artifact_root: Path | None = None,
    source: str | None = None,
) -> RegisteredVersion:
    """Log one training run, register its model as <dataset> and point `challenger` at it.

    `tags` (e.g. dagster.run_id) are added to the computed tags on the run and the
    version; `source` is where the training data came from (the features table folder).
    """
    import mlflow
    from mlflow.models import infer_signature

    client = make_client(tracking_uri)
    experiment_id = experiment_id_for(client, contract.name, tracking_uri, artifact_root)
    features = list(contract.features)
    # Rows first, then columns: selecting columns of the whole training set copies it.
    sample = result.split.train.head(2000)[features].reset_index(drop=True)
    signature = infer_signature(sample, result.model.predict(sample))
    example = sample.head(5)
    code_paths = [str(PACKAGE_DIR)]  # the pickled model refers to driftloop.training.models
    requirements = _requirements()
    config = result.config

    with (
        using_tracking_uri(tracking_uri),
        mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{contract.name}-{result.model.name}-{days[-1]}",
        ) as run,
    ):
        run_id = run.info.run_id
        all_tags = training_tags(contract, result, days, digests, run_id, tags or {})
        mlflow.set_tags(all_tags)
        params = {
            "model_kind": config.model_kind,
            "seed": config.seed,
            "window_days": config.window_days,
            "holdout_days": config.holdout_days,
            "validation_days": config.validation_days,
            "end_date": config.end_date.isoformat() if config.end_date else "latest",
            "search_trials": config.search_trials,
            "search_time_budget_s": config.search_time_budget_s,
            "n_features": len(features),
            "partitions": len(days),
        }
        params |= {f"model.{k}": v for k, v in sorted(result.best_params.items())}
        mlflow.log_params(params)

        metrics = {f"holdout_{k}": v for k, v in result.holdout_metrics.items()}
        metrics |= {f"valid_{k}": v for k, v in result.valid_metrics.items()}
        metrics |= {f"baseline_holdout_{k}": v for k, v in result.baseline_holdout_metrics.items()}
        metrics |= {f"baseline_valid_{k}": v for k, v in result.baseline_valid_metrics.items()}
        metrics |= {f"rows_{k}": float(v) for k, v in result.rows.items()}
        metrics |= {
            "train_seconds": result.train_seconds,
            "rows_per_second": result.rows_per_second,
        }
        if getattr(result.model, "best_iteration", 0):
            metrics["best_iteration"] = float(result.model.best_iteration)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _finite(v)})
        for trial in result.trials:
            value = trial.get(f"valid_{result.primary_metric}")
            if value is not None and _finite(value):
                mlflow.log_metric(f"search_valid_{result.primary_metric}", value, trial["trial"])

        _log_importance(result.feature_importance)
        _log_datasets(contract, result, digests, source)
        mlflow.log_dict(
            {"days": days, "digests": dict(sorted(digests.items()))}, "data/partitions.json"
        )
        mlflow.log_dict(
            {k: list(v) for k, v in result.split.ranges().items()} | {"rows": result.rows},
            "split.json",
        )
        if result.trials:
            mlflow.log_dict({"trials": result.trials}, "search/trials.json")
        holdout = result.split.holdout
        keep = [c for c in [*contract.id_columns, "partition_date", "label"] if c in holdout]
        predictions = holdout[keep].assign(
            score=result.holdout_scores, baseline_score=result.baseline_holdout_scores
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "predictions.parquet"
            predictions.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), "holdout")

        logged = {}
        for name, model in ((MODEL_NAME, result.model), (BASELINE_NAME, result.baseline)):
            with _quiet_pyfunc():
                logged[name] = mlflow.pyfunc.log_model(
                    name=name,
                    python_model=_pyfunc_wrapper(model),
                    signature=signature,
                    input_example=example,
                    code_paths=code_paths,
                    pip_requirements=requirements,
                )
        version = mlflow.register_model(
            logged[MODEL_NAME].model_uri, contract.name, tags=all_tags
        ).version

    if not client.get_registered_model(contract.name).description:
        client.update_registered_model(
            contract.name, description=contract.description or f"{contract.name} model"
        )
    set_alias(client, contract.name, CHALLENGER, version)
    return RegisteredVersion(
        model_name=contract.name,
        version=str(version),
        run_id=run_id,
        model_uri=f"models:/{contract.name}/{version}",
        experiment_id=experiment_id,
        baseline_model_uri=f"runs:/{run_id}/{BASELINE_NAME}",
    )


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


# ------------------------------------------------------------------------------ scoring

# Loaded model versions kept in this process (serving, a range run, evaluation): a few, as
# each holds its trees in memory. Registry versions are immutable, so an entry never goes
# stale; the key carries the version's source so a model deleted and registered again
# under the same name and number is not mistaken for the old one.
LOADED_MODELS_KEPT = 4
_LOADED: OrderedDict[tuple[str, ...], Any] = OrderedDict()
_LOADED_LOCK = threading.Lock()
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)/?$")
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)/?$")
_NUMERIC_TYPES = ("double", "float", "long", "integer", "boolean")

log = logging.getLogger(__name__)


def _pinned_version(
    model_uri: str, client: MlflowClient, stores: tuple[str, str]
) -> tuple[str, tuple[str, ...] | None]:
    """(URI to load, cache key): a registry version is loaded by number and cached under
    its source; an alias is resolved to its version first (it may move, the version may
    not); runs:/ URIs are cached as they are (a run's logged model does not change). Other
    URIs (stages, `latest`, paths) are loaded every time, as MLflow does."""
    if match := _ALIAS_URI.match(model_uri):
        version = client.get_model_version_by_alias(match["name"], match["alias"])
    elif match := _VERSION_URI.match(model_uri):
        version = client.get_model_version(match["name"], match["version"])
    elif model_uri.startswith("runs:/"):
        return model_uri, (*stores, model_uri)
    else:
        return model_uri, None
    pinned = f"models:/{version.name}/{version.version}"
    key = (*stores, pinned, str(version.source), str(version.creation_timestamp))
    return pinned, key


def cached_pyfunc(model_uri: str, tracking_uri: str | None = None) -> Any:
    """`mlflow.pyfunc.load_model` of a model URI, loaded once per process and version.

    Returns MLflow's PyFuncModel. At most LOADED_MODELS_KEPT versions are kept (least
    recently used dropped first).
    """
    import mlflow

    # Explicit URIs rather than `using_tracking_uri`: switching MLflow's global tracking URI
    # resets its tracing provider (twice per switch and back), and a server thread may be
    # scoring meanwhile.
    if tracking_uri:
        client, stores = make_client(tracking_uri), (tracking_uri, tracking_uri)
    else:
        client = mlflow.MlflowClient()
        stores = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    pinned, key = _pinned_version(model_uri, client, stores)
    if key is not None:
        with _LOADED_LOCK:
            if key in _LOADED:
                _LOADED.move_to_end(key)
                return _LOADED[key]
    loaded = _load_pyfunc(pinned, client, tracking_uri)
    if key is not None:
        with _LOADED_LOCK:
            _LOADED[key] = loaded
            while len(_LOADED) > LOADED_MODELS_KEPT:
                _LOADED.popitem(last=False)
    return loaded


def _load_pyfunc(model_uri: str, client: MlflowClient, tracking_uri: str | None) -> Any:
    """Fetch and load a pyfunc, with MLflow's dependency check replaced by ours.

    MLflow's check maps every installed distribution to its top-level modules before it
    compares anything (over a second per process here, more than loading the model); the
    requirements we log are plain pins, which `_warn_requirement_mismatches` compares
    with the installed versions directly. The Python version is compared too, as MLflow
    does. A registry version is fetched from where the registry says it is stored, with
    our client (MLflow's models:/ resolution would use the global registry URI); a local
    artifact store is read in place, not copied.
    """
    import platform
    from contextlib import nullcontext

    import mlflow.artifacts
    import mlflow.pyfunc

    fetch = mlflow.artifacts.download_artifacts
    if match := _VERSION_URI.match(model_uri):
        location = client.get_model_version_download_uri(match["name"], match["version"])
        local = Path(fetch(artifact_uri=location, tracking_uri=tracking_uri))
    else:
        # runs:/ and the rest: MLflow resolves a run's logged model with the global URIs.
        with using_tracking_uri(tracking_uri) if tracking_uri else nullcontext():
            local = Path(fetch(artifact_uri=model_uri))
    _warn_requirement_mismatches(model_uri, local / "requirements.txt")
    with _quiet_pyfunc():  # unpickling the wrapper class re-runs MLflow's type-hint advice
        loaded = mlflow.pyfunc.load_model(str(local), suppress_warnings=True)
    saved = (loaded.metadata.flavors.get("python_function") or {}).get("python_version")
    running = platform.python_version()
    if saved and saved.split(".")[:2] != running.split(".")[:2]:
        log.warning("%s was saved with Python %s; this is Python %s", model_uri, saved, running)
    return loaded


def _warn_requirement_mismatches(model_uri: str, requirements: Path) -> None:
    """Log (never raise) the logged requirements the installed packages do not satisfy."""
    from packaging.requirements import InvalidRequirement, Requirement

    if not requirements.exists():
        return
    mismatches = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = _installed_version(requirement.name)
        if installed is None:
            mismatches.append(f"{requirement} (not installed)")
        elif not requirement.specifier.contains(installed, prereleases=True):
            mismatches.append(f"{requirement} (installed: {installed})")
    if mismatches:
        log.warning(
            "%s: the installed packages differ from the model's requirements: %s",
            model_uri,
            ", ".join(mismatches),
        )


@functools.lru_cache(maxsize=256)
def _installed_version(name: str) -> str | None:
    """The installed version of a distribution, None if absent (cached: installs do not
    change under a running process). Read from the metadata's header lines only: parsing
    the whole file, long description included, costs ~10 ms a package."""
    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None
    for line in (dist.read_text("METADATA") or dist.read_text("PKG-INFO") or "").splitlines():
        if not line.strip():
            break  # end of the headers
        if line.startswith("Version:"):
            return line.removeprefix("Version:").strip()
    return dist.version


def _tabular_of(loaded: Any) -> Any:
    """Our TabularModel inside a loaded pyfunc (see `_pyfunc_wrapper`), else None."""
    from driftloop.training.models import TabularModel

    try:
        python_model = loaded.unwrap_python_model()
    except Exception:  # not a PythonModel pyfunc (another flavor): MLflow's path
        return None
    tabular = getattr(python_model, "tabular", None)
    return tabular if isinstance(tabular, TabularModel) else None


def _check_input_types(model_uri: str, frame: Any, columns: list[tuple[str, str]]) -> None:
    """Each numeric model input must hold a type that casts to a number (numbers,
    booleans, Python objects - coerced value by value, as before); strings, timestamps
    and nested values do not. String inputs take any type (compared as text)."""
    import pandas as pd
    import pyarrow as pa

    from driftloop.training.models import is_arrow_table

    arrow = is_arrow_table(frame)
    for name, kind in columns:
        if kind not in _NUMERIC_TYPES:
            continue
        if arrow:
            held = frame.schema.field(name).type
            ok = pa.types.is_integer(held) or pa.types.is_floating(held)
            ok = ok or pa.types.is_boolean(held) or pa.types.is_null(held)
            ok = ok or pa.types.is_decimal(held)
        else:
            held = frame[name].dtype
            # Numeric and boolean dtypes (not datetimes or timedeltas), or Python objects.
            ok = pd.api.types.is_object_dtype(held) or pd.api.types.is_bool_dtype(held)
            ok = ok or pd.api.types.is_numeric_dtype(held)
        if not ok:
            raise TypeError(
                f"{model_uri}: model input column {name!r} holds {held}, which does not "
                f"cast to the model's {kind}"
            )


def load_scoring_model(
    model_uri: str, tracking_uri: str | None = None
) -> Callable[[pd.DataFrame | pa.Table], np.ndarray]:
    """Load a logged pyfunc (models:/<name>@<alias>, models:/<name>/<v>, runs:/...) as
    score(frame) -> 1-D float array; the frame is a pandas DataFrame or a pyarrow Table.

    The frame may carry extra columns; the signature's columns must be present (KeyError
    naming the missing ones) and hold types that cast to the logged ones (TypeError).
    Our own models (a TabularModel in `_pyfunc_wrapper`) are unwrapped and score the
    frame directly: they select their columns and cast them once, column by column
    (numeric -> float64, categorical -> training category codes), which is what MLflow's
    per-row schema enforcement and two string casts per categorical cost several times
    over. Any other pyfunc goes through MLflow's `predict`, its inputs cast to the logged
    types (float64 / string) first so integer or categorical dtypes do not trip MLflow's
    schema enforcement. A version is loaded once per process (`cached_pyfunc`).

    `threads` caps our models' prediction threads (0: the library's default; other pyfuncs
    predict as MLflow does). score.features lists the columns it reads,
    score.string_features those logged as strings (read them dictionary-encoded),
    score.pyfunc is the loaded model.
    """
    import numpy as np
    import pandas as pd
    from mlflow.types import DataType

    from driftloop.training.models import as_pandas, column_names

    loaded = cached_pyfunc(model_uri, tracking_uri)
    schema = loaded.metadata.get_input_schema()
    columns = [(c.name, c.type) for c in schema.inputs] if schema is not None else []
    names = [name for name, _ in columns]
    tabular = _tabular_of(loaded)

    def check(frame: pd.DataFrame | pa.Table) -> None:
        present = set(column_names(frame))
        missing = [name for name in names if name not in present]
        if missing:
            raise KeyError(f"{model_uri}: the frame lacks model input columns {missing}")
        _check_input_types(model_uri, frame, [(n, k.name) for n, k in columns])

    def score(frame: pd.DataFrame | pa.Table, threads: int = 0) -> np.ndarray:
        check(frame)
        if tabular is not None:
            return np.asarray(tabular.predict(frame, threads), dtype="float64").ravel()
        frame = as_pandas(frame, names or column_names(frame))
        if not columns:
            return np.asarray(loaded.predict(frame), dtype="float64").ravel()
        x = pd.DataFrame(index=frame.index)
        for name, kind in columns:
            values = frame[name]
            if kind == DataType.string:
                plain = values.dtype == object
                if plain and pd.api.types.infer_dtype(values, skipna=False) == "string":
                    # Already str objects with no missing value (how Parquet strings arrive):
                    # the casts below would return the same values after two full copies.
                    x[name] = values
                    continue
                values = values.astype("string").astype(object)
                x[name] = values.where(values.notna(), None)
            elif kind in (DataType.double, DataType.float):
                x[name] = pd.to_numeric(values, errors="coerce").astype("float64")
            else:
                x[name] = values
        return np.asarray(loaded.predict(x), dtype="float64").ravel()

    score.features = names  # type: ignore[attr-defined]
    score.string_features = [n for n, k in columns if k == DataType.string]  # type: ignore[attr-defined]
    score.model_uri = model_uri  # type: ignore[attr-defined]
    score.pyfunc = loaded  # type: ignore[attr-defined]
    return score
