"""Loading logged models for scoring (no Dagster): cached pyfuncs, input checks, fast paths."""

from __future__ import annotations

import functools
import logging
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.training.columns import as_pandas, column_names, is_arrow_table
from driftloop.training.model_base import TabularModel
from driftloop.training.registry import make_client, using_tracking_uri

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from mlflow import MlflowClient


@contextmanager
def quiet_pyfunc() -> Iterator[None]:
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
    with quiet_pyfunc():  # unpickling the wrapper class re-runs MLflow's type-hint advice
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
    change under a running process). Read from the metadata's header lines only, not the
    whole file with its long description, which is slower to parse."""
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


def tabular_of(loaded: Any) -> Any:
    """Our TabularModel inside a loaded pyfunc (see `pyfunc_wrapper`), else None."""
    try:
        python_model = loaded.unwrap_python_model()
    except Exception:  # not a PythonModel pyfunc (another flavor): MLflow's path
        return None
    tabular = getattr(python_model, "tabular", None)
    return tabular if isinstance(tabular, TabularModel) else None


def check_input_types(model_uri: str, frame: Any, columns: list[tuple[str, str]]) -> None:
    """Each numeric model input must hold a type that casts to a number (numbers,
    booleans, Python objects, which are coerced value by value); strings, timestamps
    and nested values do not. String inputs take any type (compared as text)."""
    import pandas as pd
    import pyarrow as pa

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


def input_columns(loaded: Any) -> list[tuple[str, Any]]:
    """The logged input signature of a loaded pyfunc: (column, mlflow DataType) pairs, []
    without a signature."""
    schema = loaded.metadata.get_input_schema()
    return [(c.name, c.type) for c in schema.inputs] if schema is not None else []


def frame_scorer(
    model_uri: str, loaded: Any
) -> Callable[[pd.DataFrame | pa.Table, int], np.ndarray]:
    """score(frame, threads=0) -> 1-D float array of a loaded pyfunc; the frame is a pandas
    DataFrame or a pyarrow Table.

    The frame may carry extra columns; the signature's columns must be present (KeyError
    naming the missing ones) and hold types that cast to the logged ones (TypeError).
    Our own models (a TabularModel in `pyfunc_wrapper`) are unwrapped and score the
    frame directly: they select their columns and cast them once, column by column
    (numeric -> float64, categorical -> training category codes), which is what MLflow's
    per-row schema enforcement and two string casts per categorical cost several times
    over. Any other pyfunc goes through MLflow's `predict`, its inputs cast to the logged
    types (float64 / string) first so integer or categorical dtypes do not trip MLflow's
    schema enforcement. `threads` caps our models' prediction threads (0: the library's
    default; other pyfuncs predict as MLflow does).
    """
    import numpy as np
    import pandas as pd
    from mlflow.types import DataType

    columns = input_columns(loaded)
    names = [name for name, _ in columns]
    tabular = tabular_of(loaded)

    def check(frame: pd.DataFrame | pa.Table) -> None:
        present = set(column_names(frame))
        missing = [name for name in names if name not in present]
        if missing:
            raise KeyError(f"{model_uri}: the frame lacks model input columns {missing}")
        check_input_types(model_uri, frame, [(n, k.name) for n, k in columns])

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

    return score


def load_scoring_model(
    model_uri: str, tracking_uri: str | None = None
) -> Callable[[pd.DataFrame | pa.Table, int], np.ndarray]:
    """Load a logged pyfunc (models:/<name>@<alias>, models:/<name>/<v>, runs:/...) as
    score(frame, threads=0) -> 1-D float array (`frame_scorer`). A version is loaded once
    per process (`cached_pyfunc`). Serving code uses `driftloop.serving.scoring_model.
    ScoringModel`, which wraps the same function with the model's identity and inputs."""
    return frame_scorer(model_uri, cached_pyfunc(model_uri, tracking_uri))
