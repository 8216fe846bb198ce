"""Online scoring with a canary, request logging and explanations (no HTTP here).

`CanaryScorer` is the `OnlineScorer` the server runs: each request row is scored by the
arm its id falls in (`driftloop.serving.canary`: sticky by a hash of the row id; rows
without an id stay with the champion), every scored row is appended to the request log
(`canary_log.RequestLog`), and a request that asks for it (`explain`) gets each row's top
contributions, computed by the same function as the batch scorer's
(`driftloop.evaluation.explain`). The response names each row's version and arm in
headers (`X-Model-Version`, `X-Canary-Arm`, comma-separated in row order), so the body
stays MLflow's.

`CanaryRouter` re-reads the running canary from the ledger and loads its version in a
background thread, never on the request path.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from driftloop.evaluation.explain import explain, top_contributions
from driftloop.paths import DatasetPaths
from driftloop.serving.canary import CANARY, CHAMPION_ARM, Canary, active_canary
from driftloop.serving.canary_log import RequestLog
from driftloop.serving.online import OnlineScorer, Scored
from driftloop.serving.periodic import Periodic
from driftloop.serving.requests import parse_request
from driftloop.serving.scoring_model import ScoringModel

log = logging.getLogger(__name__)

DEFAULT_TOP = 5


class CanaryRouter:
    """The running canary (from the ledger) and its loaded model, refreshed in a thread."""

    def __init__(self, paths: DatasetPaths, tracking_uri: str, refresh_seconds: float = 5.0):
        self.paths = paths
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self.current: tuple[Canary, ScoringModel] | None = None
        self.last_error: str | None = None
        self._periodic = Periodic("canary-router", self.refresh, refresh_seconds)

    def refresh(self) -> tuple[Canary, ScoringModel] | None:
        try:
            canary = active_canary(self.paths)
        except Exception as error:  # an unreadable ledger: keep routing as before
            self.last_error = f"reading the ledger: {error}"
            log.warning(self.last_error)
            return self.current
        if canary is None:
            self.current = None
            return None
        held = self.current
        if held is not None and held[1].version == canary.version:
            self.current = (canary, held[1])  # the share may have changed
            return self.current
        uri = f"models:/{self.paths.dataset}/{canary.version}"
        try:
            model = ScoringModel.load(
                uri, self.tracking_uri, canary.version, str(canary.run_id or ""), self.paths.root
            )
        except Exception as error:
            self.last_error = f"loading the canary {uri}: {error}"
            log.error(self.last_error)
            return self.current
        self.current = (canary, model)
        log.info("%s: canary v%s at %.0f%%", self.paths.dataset, canary.version, canary.share * 100)
        return self.current

    def start(self) -> None:
        self.refresh()
        self._periodic.start()

    def stop(self) -> None:
        self._periodic.stop()


def _take(columns: dict[str, Any], rows: list[int]) -> dict[str, Any]:
    """The given rows of feature columns (arrays stay arrays, lists stay lists)."""
    out = {}
    for name, values in columns.items():
        out[name] = values[rows] if hasattr(values, "dtype") else [values[i] for i in rows]
    return out


def explain_rows(model: ScoringModel, columns: dict[str, Any], top: int) -> list | None:
    """Each row's top contributions from our model inside `model` (None for other models)."""
    import pandas as pd

    if model.tabular is None:  # another flavour: it has no contributions of its own
        return None
    return top_contributions(explain(model.tabular, pd.DataFrame(columns)), top)


class CanaryScorer(OnlineScorer):
    """`OnlineScorer` with a canary arm, a request log and explanations on request."""

    def __init__(
        self, *args: Any, router: CanaryRouter, request_log: RequestLog, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.router = router
        self.request_log = request_log

    def start_background(self) -> None:
        self.router.start()

    def stop_background(self) -> None:
        self.router.stop()
        self.request_log.flush()

    def version(self) -> dict[str, Any]:
        """`OnlineScorer.version` and the canary routed now: its version, share and since
        when (None without a canary), with the router's last error."""
        routed = self.router.current
        canary = None
        if routed is not None:
            running, model = routed
            canary = {
                "model_version": model.version,
                "share": running.share,
                "started_at": running.started_at,
                "champion_version": running.champion_version,
            }
        return super().version() | {"canary": canary, "canary_error": self.router.last_error}

    def score(self, payload: Any, request: dict[str, Any] | None = None) -> Scored:
        import numpy as np

        request = request or {}
        champion = self.resolve_model(request)
        routed = self.router.current
        rows = parse_request(payload, self.schema)
        columns = self.features(rows)
        id_column = self.contract.id_columns[0] if self.contract.id_columns else None
        ids = rows.columns.get(id_column) if id_column else None
        ids = ids or [None] * rows.count
        arms = [
            routed[0].arm(i) if routed is not None and i is not None else CHAMPION_ARM for i in ids
        ]
        models = {CHAMPION_ARM: champion, CANARY: routed[1] if routed else champion}
        scores = np.empty(rows.count, dtype=np.float64)
        explanations: list[Any] = [None] * rows.count
        top = int(request.get("explain_top") or DEFAULT_TOP)
        for arm, model in models.items():
            picked = [i for i, a in enumerate(arms) if a == arm]
            if not picked:
                continue
            # Every row in one arm (always, without a canary): the columns as they are.
            part = columns if len(picked) == rows.count else _take(columns, picked)
            scores[picked] = np.asarray(model.predict_columns(part, len(picked)), dtype=np.float64)
            if request.get("explain"):
                for i, row in zip(picked, explain_rows(model, part, top) or [], strict=False):
                    explanations[i] = row
        versions = [models[a].version for a in arms]
        body = self.response_body(champion, scores)
        if request.get("explain"):
            body["explanations"] = explanations
        unseen = self.unseen(champion, rows)
        if unseen:
            body["unseen_categories"] = unseen
        self._log(request, rows, ids, arms, versions, scores)
        # Without a canary every row is the champion's: its version header stays one value.
        headers = {"X-Canary-Arm": CHAMPION_ARM}
        if routed is not None:
            headers = {"X-Model-Version": ",".join(versions), "X-Canary-Arm": ",".join(arms)}
        return Scored(body, champion, rows.count, unseen, headers=headers)

    def _log(self, request: dict, rows: Any, ids: list, arms: list, versions: list, scores) -> None:
        event = self.contract.event_time.column
        now = datetime.now(UTC)
        self.request_log.append(
            [
                {
                    "request_id": str(request.get("request_id") or ""),
                    "row_id": None if ids[i] is None else str(ids[i]),
                    "day": rows.columns[event][i].date().isoformat(),
                    "arm": arms[i],
                    "model_version": versions[i],
                    "prediction": float(scores[i]),
                    "received_at": now,
                }
                for i in range(rows.count)
            ]
        )
