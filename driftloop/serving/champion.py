"""The served champion: `models:/<dataset>@champion`, re-resolved in the background.

MLflow's own server resolves an alias once, at start, so a promotion or a rollback would
need a restart. `ChampionWatcher` resolves the alias every `refresh_seconds` from a
background thread (never on the request path) and loads the version when it differs from
the one served; the old model serves until the new one is loaded, then the swap is one
assignment, so a request that read the old `LoadedModel` finishes on it. If the alias is
removed the server stops being ready (503) until a champion exists again; a registry that
cannot be reached keeps the current model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driftloop.names import CHAMPION
from driftloop.serving.periodic import Periodic
from driftloop.training.lightgbm_model import LightGBMModel
from driftloop.training.model_loading import load_scoring_model
from driftloop.training.registry import make_client, version_for_alias

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 5.0


@dataclass
class TreeInput:
    """How our LightGBM model reads its input, for requests of a few rows: its matrix is
    built straight from the columns (numbers as they are; a category as its position among
    the training categories, NaN when unseen or NULL: `LightGBMModel.feature_matrix`'s
    rule), skipping the pandas frame and MLflow's input checks a batch needs."""

    features: list[str]
    positions: dict[str, dict[str, float]]
    booster: Any
    iteration: int

    def predict(self, columns: dict[str, Any], rows: int) -> Any:
        import numpy as np

        matrix = np.empty((rows, len(self.features)), dtype=np.float64)
        for j, name in enumerate(self.features):
            position = self.positions.get(name)
            if position is None:
                matrix[:, j] = columns[name]
            else:
                matrix[:, j] = [position.get(v, np.nan) for v in columns[name]]
        return self.booster.predict(matrix, num_iteration=self.iteration, num_threads=1)


@dataclass
class LoadedModel:
    """One registered version, loaded: `score(features) -> scores`."""

    version: str
    run_id: str
    model_uri: str
    score: Callable[..., Any]
    # Training categories per categorical feature (our own models only), so a value the
    # model never saw is counted instead of passing silently as missing.
    categories: dict[str, frozenset[str]] = field(default_factory=dict)
    tree_input: TreeInput | None = None
    loaded_at: float = field(default_factory=time.time)

    def predict(self, columns: dict[str, Any], rows: int) -> Any:
        """Scores of rows given as feature columns (float64 arrays; categories as lists of
        str or None). One request, one thread: the server's workers are the parallelism."""
        if self.tree_input is not None:
            return self.tree_input.predict(columns, rows)
        import pandas as pd

        return self.score(pd.DataFrame(columns), threads=1)


def _tabular(score: Callable[..., Any]) -> Any:
    pyfunc = getattr(score, "pyfunc", None)
    try:
        return pyfunc.unwrap_python_model().tabular  # type: ignore[union-attr]
    except Exception:  # another flavor, or not a model of ours
        return None


def tree_input(score: Callable[..., Any]) -> TreeInput | None:
    """The direct input path of our LightGBM model, else None (MLflow's predict is used)."""
    tabular = _tabular(score)
    if not isinstance(tabular, LightGBMModel) or tabular.booster is None:
        return None
    try:
        positions = {
            name: {str(c): float(i) for i, c in enumerate(tabular.categories[name])}
            for name in tabular.categorical
        }
        return TreeInput(list(tabular.features), positions, tabular.booster, tabular.best_iteration)
    except (AttributeError, KeyError):  # a model saved by another version: MLflow's path
        log.warning("%s: scoring through MLflow's predict", getattr(score, "model_uri", "model"))
        return None


def training_categories(score: Callable[..., Any]) -> dict[str, frozenset[str]]:
    """The categories a loaded pyfunc of ours was trained with, else {}."""
    categories = getattr(_tabular(score), "categories", None) or {}
    return {name: frozenset(map(str, values)) for name, values in categories.items()}


class ChampionWatcher:
    """The served model of an alias, re-resolved from the registry every `refresh_seconds`."""

    def __init__(
        self,
        dataset: str,
        tracking_uri: str,
        alias: str = CHAMPION,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self.dataset = dataset
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.refresh_seconds = refresh_seconds
        self.model: LoadedModel | None = None
        self.checked_at: float | None = None
        self.last_error: str | None = None
        self.on_change: list[Callable[[LoadedModel | None], None]] = []
        self._refresh_lock = threading.Lock()
        self._client: Any = None
        self._periodic = Periodic("champion-watcher", self.refresh, refresh_seconds)

    def refresh(self) -> LoadedModel | None:
        """Resolve the alias now; load the version if it is not the one served."""
        with self._refresh_lock:
            try:
                if self._client is None:  # one client (and one database engine) for good
                    self._client = make_client(self.tracking_uri)
                version = version_for_alias(self._client, self.dataset, self.alias)
            except Exception as error:  # the registry is down or locked: keep serving
                self.last_error = f"resolving {self.dataset}@{self.alias}: {error}"
                log.warning(self.last_error)
                return self.model
            self.checked_at = time.time()
            if version is None:
                if self.model is not None:
                    log.warning("%s@%s is gone: not ready", self.dataset, self.alias)
                    self._swap(None)
                return None
            number = str(version.version)
            if self.model is not None and self.model.version == number:
                return self.model
            uri = f"models:/{self.dataset}/{number}"
            started = time.perf_counter()
            try:
                score = load_scoring_model(uri, tracking_uri=self.tracking_uri)
            except Exception as error:
                self.last_error = f"loading {uri}: {error}"
                log.error(self.last_error)
                return self.model
            before = self.model.version if self.model else None
            loaded = LoadedModel(number, str(version.run_id), uri, score)
            loaded.categories = training_categories(score)
            loaded.tree_input = tree_input(score)
            self._swap(loaded)
            self.last_error = None
            log.info(
                "%s@%s: serving v%s (was %s), loaded in %.1f s",
                self.dataset,
                self.alias,
                number,
                f"v{before}" if before else "nothing",
                time.perf_counter() - started,
            )
            return self.model

    def _swap(self, model: LoadedModel | None) -> None:
        self.model = model
        for callback in self.on_change:
            callback(model)

    def start(self) -> None:
        """Refresh once now, then every `refresh_seconds` in a daemon thread."""
        self.refresh()
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
