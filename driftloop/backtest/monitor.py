"""The backtest's monitoring: the signals production would hold about a champion on a given
morning (calibrated drift of yesterday, performance estimated over the trailing days and
realised over the days whose labels were due), computed by the production functions of
``driftloop.monitoring`` and cached per champion."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from driftloop.backtest.models import History, ModelFitter, TrainedModel
from driftloop.data.contract import Contract
from driftloop.data.retraining import TriggerPolicy
from driftloop.metrics import PRIMARY_METRIC
from driftloop.monitoring.calibrated_drift import (
    PREDICTION_COLUMN,
    DriftCalibration,
    calibrate,
    score_day,
)
from driftloop.monitoring.estimation import estimate, fit_estimator
from driftloop.monitoring.performance import FloorCache, PooledPerformance, judge, metric_value
from driftloop.monitoring.signals import REFERENCE_SEED, feature_kinds
from driftloop.monitoring.trigger import WindowSignal
from driftloop.names import DAY


@dataclass
class DaySignal:
    """What the trigger is shown about one day, and the numbers behind it."""

    signal: WindowSignal
    drift_score: float
    estimated: PooledPerformance
    realised: PooledPerformance
    top_drifted: list[str]


class Monitor:
    """Signals of any champion on any day, cached by what they depend on."""

    def __init__(
        self,
        contract: Contract,
        history: History,
        fitter: ModelFitter,
        scores: Callable[[TrainedModel, str], np.ndarray],
        reference_rows: int,
    ) -> None:
        self.contract = contract
        self.history = history
        self.fitter = fitter
        self.scores = scores
        self.reference_rows = reference_rows
        self.metric = PRIMARY_METRIC[contract.task]
        self.kinds = feature_kinds(contract)
        self._calibrations: dict[tuple[str, float], DriftCalibration] = {}
        self._reference: dict[str, pd.DataFrame] = {}
        self._estimators: dict[str, Any] = {}
        self._floors: dict[tuple[str, float], FloorCache] = {}
        self._daily_estimate: dict[tuple[str, str], float] = {}
        # Policies that share a champion share its signals (only their thresholds differ).
        self._drift: dict[tuple[str, str, float], Any] = {}
        self._pools: dict[tuple, tuple[PooledPerformance, PooledPerformance]] = {}

    def forget(self, model_id: str) -> None:
        """Drop what is cached about a model no policy serves any more."""
        for cache in (self._calibrations, self._floors, self._drift, self._pools):
            for key in [k for k in cache if k[0] == model_id]:
                del cache[key]
        self._reference.pop(model_id, None)
        self._estimators.pop(model_id, None)
        for key in [k for k in self._daily_estimate if k[0] == model_id]:
            del self._daily_estimate[key]

    # -- per champion

    def reference(self, model: TrainedModel) -> pd.DataFrame:
        """The champion's training window, sampled (seeded), with its own predictions."""
        if model.id not in self._reference:
            spans = [self.history.span[d] for d in model.window if d in self.history.span]
            rows = np.concatenate([np.arange(a, b) for a, b in spans])
            if len(rows) > self.reference_rows:
                rng = np.random.default_rng(REFERENCE_SEED)
                rows = np.sort(rng.choice(rows, size=self.reference_rows, replace=False))
            frame = self.history.frame.iloc[rows][[*self.kinds, DAY]].reset_index(drop=True)
            frame[PREDICTION_COLUMN] = model.model.predict(frame)
            self._reference[model.id] = frame
        return self._reference[model.id]

    def calibration(self, model: TrainedModel, quantile: float) -> DriftCalibration:
        key = (model.id, quantile)
        if key not in self._calibrations:
            self._calibrations[key] = calibrate(
                self.reference(model), DAY, self.kinds, model.importance or {}, quantile
            )
        return self._calibrations[key]

    def estimator(self, model: TrainedModel) -> Any:
        if model.id not in self._estimators:
            holdout = self.fitter.holdout(model)
            labels = holdout["label"].to_numpy(dtype="float64", na_value=math.nan)
            self._estimators[model.id] = fit_estimator(
                self.contract, self.metric, holdout, labels, model.holdout_scores
            )
        return self._estimators[model.id]

    def floors(self, model: TrainedModel, confidence: float) -> FloorCache:
        key = (model.id, confidence)
        if key not in self._floors:
            holdout = self.fitter.holdout(model)
            labels = holdout["label"].to_numpy(dtype="float64", na_value=math.nan)
            self._floors[key] = FloorCache(self.metric, labels, model.holdout_scores, confidence)
        return self._floors[key]

    # -- per day

    def daily_estimate(self, model: TrainedModel, day: str) -> float:
        """The estimated metric of one day's rows (for the estimate's accuracy report)."""
        key = (model.id, day)
        if key not in self._daily_estimate:
            rows = self.history.day_rows(day)
            value = math.nan
            if len(rows):
                value = estimate(self.estimator(model), rows, self.scores(model, day))
            self._daily_estimate[key] = value
        return self._daily_estimate[key]

    def _pool(self, model: TrainedModel, days: list[str]) -> tuple[pd.DataFrame, np.ndarray]:
        frames = [self.history.day_rows(d) for d in days]
        frames = [f for f in frames if len(f)]
        if not frames:
            return self.history.frame.iloc[0:0], np.empty(0)
        scores = np.concatenate(
            [self.scores(model, d) for d in days if len(self.history.day_rows(d))]
        )
        return pd.concat(frames), scores

    def _pooled(
        self, model: TrainedModel, days: list[str], cutoff: datetime, policy: TriggerPolicy
    ) -> tuple[PooledPerformance, PooledPerformance]:
        """The estimated metric of the pool's rows and the realised one of those whose
        labels were due by ``cutoff``, each judged against the champion's floor."""
        floors = self.floors(model, policy.performance_confidence)
        frame, scores = self._pool(model, days)
        value = estimate(self.estimator(model), frame, scores) if len(frame) else math.nan
        reference = model.holdout_metric
        estimated = judge("estimated", self.metric, value, reference, len(frame), len(days), floors)
        labels = frame["label"].to_numpy(dtype="float64", na_value=math.nan)
        due = self.history.due[frame.index.to_numpy()] <= np.datetime64(cutoff)
        known = due & ~np.isnan(labels)
        value = metric_value(self.metric, labels[known], scores[known]) if known.any() else math.nan
        labelled_days = len(set(frame[DAY].to_numpy()[known].tolist()))
        rows = int(known.sum())
        realised = judge("realised", self.metric, value, reference, rows, labelled_days, floors)
        return estimated, realised

    def signal(
        self,
        model: TrainedModel,
        day: date,
        serving_since: date,
        cutoff: datetime,
        policy: TriggerPolicy,
    ) -> DaySignal:
        """The signal of ``day`` as production holds it at ``cutoff`` (the next midnight)."""
        day_text = day.isoformat()
        key = (model.id, day_text, policy.calibration_quantile)
        if key not in self._drift:
            rows = self.history.day_rows(day_text)
            current = rows[list(self.kinds)].reset_index(drop=True)
            current[PREDICTION_COLUMN] = self.scores(model, day_text)
            calibration = self.calibration(model, policy.calibration_quantile)
            self._drift[key] = score_day(calibration, current)
        drift = self._drift[key]
        first = max(serving_since, day - timedelta(days=policy.performance_window_days - 1))
        pool_days = [
            d.isoformat()
            for d in (first + timedelta(days=k) for k in range((day - first).days + 1))
            if d.isoformat() in self.history.span
        ]
        pool_key = (model.id, tuple(pool_days), cutoff, policy.performance_confidence)
        if pool_key not in self._pools:
            self._pools[pool_key] = self._pooled(model, pool_days, cutoff, policy)
        estimated, realised = self._pools[pool_key]
        breached_drift = drift.score >= policy.drift_threshold
        top = [c["column"] for c in drift.ranked()[:3]]
        detail = describe_day(day, drift.score, policy.drift_threshold, top, estimated, realised)
        signal = WindowSignal(
            day=day,
            drift_breached=bool(breached_drift),
            performance_breached=None if math.isnan(realised.value) else realised.breached,
            estimated_breached=None if math.isnan(estimated.value) else estimated.breached,
            detail=detail,
        )
        return DaySignal(signal, drift.score, estimated, realised, top)


def describe_day(
    day: date,
    drift_score: float,
    threshold: float,
    top: list[str],
    estimated: PooledPerformance,
    realised: PooledPerformance,
) -> str:
    """One day's inputs in words: the drift score against its threshold (and the features
    that weigh most in it), the estimated and the realised pool against the floor."""
    drift = f"drift score {drift_score:.2f} (breaches at {threshold:.2f}"
    drift += f"; most: {', '.join(top)})" if top else ")"
    return f"{day.isoformat()}: {drift}, {estimated.sentence()}, {realised.sentence()}"
