"""The served champion: `models:/<dataset>@champion`, re-resolved in the background.

MLflow's own server resolves an alias once, at start, so a promotion or a rollback would
need a restart. `ChampionWatcher` resolves the alias every `refresh_seconds` from a
background thread (never on the request path) and loads the version when it differs from
the one served; the old model serves until the new one is loaded, then the swap is one
assignment, so a request that read the old `ScoringModel` finishes on it. If the alias is
removed the server stops being ready (503) until a champion exists again; a registry that
cannot be reached keeps the current model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from driftloop.names import CHAMPION
from driftloop.serving.periodic import Periodic
from driftloop.serving.scoring_model import ScoringModel
from driftloop.training.registry import make_client, version_for_alias

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 5.0


class ChampionWatcher:
    """The served model of an alias, re-resolved from the registry every `refresh_seconds`."""

    def __init__(
        self,
        dataset: str,
        tracking_uri: str,
        alias: str = CHAMPION,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
        root: Path | None = None,
    ) -> None:
        self.dataset = dataset
        self.root = root  # the data root, where compiled trees are cached
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.refresh_seconds = refresh_seconds
        self.model: ScoringModel | None = None
        self.checked_at: float | None = None
        self.last_error: str | None = None
        self.on_change: list[Callable[[ScoringModel | None], None]] = []
        self._refresh_lock = threading.Lock()
        self._client: Any = None
        self._periodic = Periodic("champion-watcher", self.refresh, refresh_seconds)

    def refresh(self) -> ScoringModel | None:
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
                loaded = ScoringModel.load(
                    uri, self.tracking_uri, number, str(version.run_id), self.root
                )
            except Exception as error:
                self.last_error = f"loading {uri}: {error}"
                log.error(self.last_error)
                return self.model
            before = self.model.version if self.model else None
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

    def _swap(self, model: ScoringModel | None) -> None:
        self.model = model
        for callback in self.on_change:
            callback(model)

    def start(self) -> None:
        """Refresh once now, then every `refresh_seconds` in a daemon thread."""
        self.refresh()
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()
