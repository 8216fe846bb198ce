"""What monitoring knows about one champion version, built lazily and cached per version under
``<data root>/reports/<dataset>/reference/``: its drift calibration (from its reference
sample and its own feature importance), its performance estimator and its holdout rows'
labels and scores (fitted from the holdout days its tags name), and the daily signal
computed from them.

A version's training window, holdout and importance never change, so the cache never goes
stale; a cache written under other calibration settings is rebuilt.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from driftloop.monitoring.signals import feature_kinds
from driftloop.names import DAY

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from driftloop.data.contract import Contract
from driftloop.data.lake import days_between
from driftloop.data.retraining import TriggerPolicy
from driftloop.metrics import PRIMARY_METRIC
from driftloop.monitoring.calibrated_drift import (
    CalibratedDrift,
    DriftCalibration,
    calibrate,
    score_day,
)
from driftloop.monitoring.estimation import estimate, fit_estimator
from driftloop.monitoring.performance import FloorCache, PooledPerformance, judge, metric_value
from driftloop.paths import DatasetPaths

CACHE_FORMAT = 1


@dataclass
class ChampionMonitor:
    version: str
    metric: str
    holdout_metric: float
    calibration: DriftCalibration | None  # None when built for performance alone
    estimator: Any
    holdout_labels: np.ndarray
    holdout_scores: np.ndarray
    quantile: float
    cache_format: int = CACHE_FORMAT

    def floors(self, confidence: float) -> FloorCache:
        return FloorCache(self.metric, self.holdout_labels, self.holdout_scores, confidence)

    def drift(self, current: pd.DataFrame) -> CalibratedDrift:
        """The calibrated drift of one day (features and the ``prediction`` column)."""
        if self.calibration is None:
            raise ValueError(f"v{self.version}: built without a drift reference")
        return score_day(self.calibration, current)

    def estimated(
        self, pool: pd.DataFrame, scores: np.ndarray, days: int, confidence: float
    ) -> PooledPerformance:
        """The pool's estimated metric against the floor at its size."""
        value = estimate(self.estimator, pool, scores) if len(pool) else math.nan
        return judge(
            "estimated",
            self.metric,
            value,
            self.holdout_metric,
            len(pool),
            days,
            self.floors(confidence),
        )

    def realised(
        self, labels: np.ndarray, scores: np.ndarray, days: int, confidence: float
    ) -> PooledPerformance:
        """The pool's realised metric on its labelled rows against the floor at its size."""
        import numpy as np

        labels = np.asarray(labels, dtype="float64")
        known = ~np.isnan(labels)
        value = math.nan
        if known.any():
            value = metric_value(self.metric, labels[known], np.asarray(scores)[known])
        return judge(
            "realised",
            self.metric,
            value,
            self.holdout_metric,
            int(known.sum()),
            days,
            self.floors(confidence),
        )


def monitor_path(paths: DatasetPaths, version: str) -> Path:
    return paths.reports / "reference" / f"v{version}_monitor.pkl"


def holdout_days(tags: dict[str, str]) -> list[str]:
    """The holdout days a version's tags name (``driftloop.holdout_start`` .. ``_end``)."""
    from datetime import date

    start, end = tags.get("driftloop.holdout_start"), tags.get("driftloop.holdout_end")
    if not start or not end:
        return []
    return days_between(date.fromisoformat(start), date.fromisoformat(end))


def champion_monitor(
    contract: Contract,
    paths: DatasetPaths,
    version: str,
    tags: dict[str, str],
    reference: pd.DataFrame | None,
    importance: dict[str, float],
    holdout: pd.DataFrame,
    holdout_scores: np.ndarray,
    policy: TriggerPolicy,
) -> ChampionMonitor:
    """Build (or read from its cache) the monitor of one version.

    ``reference``: the version's reference sample with ``partition_date`` and
    ``prediction`` (None: no drift calibration, for the performance asset); ``holdout``:
    its holdout rows (features and ``label``) and ``holdout_scores`` its scores of them
    (the holdout metric, the floor's centre, is computed from these, so the floor and the
    estimate speak of the same rows).
    """
    import numpy as np

    path = monitor_path(paths, version)
    if path.exists():
        with path.open("rb") as handle:
            cached = pickle.load(handle)
        if (
            getattr(cached, "cache_format", None) == CACHE_FORMAT
            and cached.quantile == policy.calibration_quantile
            and (cached.calibration is not None or reference is None)
        ):
            return cached
    metric = PRIMARY_METRIC[contract.task]
    labels = holdout["label"].to_numpy(dtype="float64", na_value=math.nan)
    if len(holdout) == 0 or np.isnan(labels).all():
        raise ValueError(
            f"{contract.name} v{version}: no labelled holdout rows for the days its tags name "
            f"({tags.get('driftloop.holdout_start')}..{tags.get('driftloop.holdout_end')})"
        )
    known = ~np.isnan(labels)
    holdout_scores = np.asarray(holdout_scores, dtype="float64")
    monitor = ChampionMonitor(
        version=str(version),
        metric=metric,
        holdout_metric=metric_value(metric, labels[known], holdout_scores[known]),
        calibration=None
        if reference is None
        else calibrate(
            reference, DAY, feature_kinds(contract), importance, policy.calibration_quantile
        ),
        estimator=fit_estimator(contract, metric, holdout, labels, holdout_scores),
        holdout_labels=labels,
        holdout_scores=holdout_scores,
        quantile=policy.calibration_quantile,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    with temp.open("wb") as handle:
        pickle.dump(monitor, handle, protocol=pickle.HIGHEST_PROTOCOL)
    temp.replace(path)
    return monitor


def importance_of(client: Any, run_id: str | None) -> dict[str, float]:
    """The ``feature_importance.json`` a training run logged ({} when there is none)."""
    import json
    import tempfile

    if not run_id:
        return {}
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run_id, "feature_importance.json", folder)
        except Exception:  # an artifact store without it: equal weights
            return {}
        return {str(k): float(v) for k, v in json.loads(Path(path).read_text()).items()}


def signal_summary(
    drift: CalibratedDrift, estimated: PooledPerformance, policy: TriggerPolicy
) -> dict[str, Any]:
    """The calibrated verdicts of a day, as the drift summary records them."""
    unknown = math.isnan(estimated.value)
    return {
        "drift_score": round(drift.score, 6),
        "drift_threshold": policy.drift_threshold,
        "drift_breached": bool(drift.score >= policy.drift_threshold),
        "prediction_excess": round(drift.prediction_excess, 6),
        "ranked_features": [
            {k: c[k] for k in ("column", "weight", "excess", "contribution")}
            for c in drift.ranked()
        ],
        "calibrated_columns": drift.columns,
        "estimated": estimated.to_dict(),
        "estimated_breached": None if unknown else bool(estimated.breached),
    }
