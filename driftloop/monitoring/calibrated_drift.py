"""Drift that matters: each column's daily distance judged against its own day-to-day variation
inside the champion's training window, and weighted by the champion's feature importance.

Per column, a day's distance to the reference is

- numeric: the mean absolute gap between the day's and the reference's quantiles on a fixed
  grid (an approximation of the first Wasserstein distance), divided by the reference's
  standard deviation, plus the change in the missing share;
- categorical: the Jensen-Shannon distance (natural log) between the shares of each value,
  missing counted as a value of its own.

Calibration computes the same distance for every day of the champion's training window
against the reference and keeps, per column, the ``quantile`` of those daily distances as
its bound. A column that always differs from day to day (a weekday with one value per day,
the weather) gets a high bound and does not alarm by itself. A day's *excess* for a column
is ``min(max(distance / bound - 1, 0), EXCESS_CAP)``; the day's drift score is the larger
of the importance-weighted sum of the features' excesses (weights: the champion's own
normalised importance) and ``PREDICTION_WEIGHT`` times the prediction's excess (the
champion's scores judged the same way). The cap keeps a feature the champion hardly uses
from alarming alone however far it moves: a feature needs at least threshold / cap of the
importance to breach by itself.

Distances depend on the number of rows, so a day is compared with calibration days of the
same size: the current day is sampled (seeded) down to the median calibration day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

from driftloop.monitoring.drift import Kind

QUANTILE_GRID = 101
CALIBRATION_QUANTILE = 0.95
MIN_CALIBRATION_DAYS = 5
MIN_DAY_ROWS = 10
SAMPLE_SEED = 20130101
PREDICTION_COLUMN = "prediction"
MISSING = "\x00missing"
EXCESS_CAP = 4.0
PREDICTION_WEIGHT = 0.5


@dataclass
class _NumericRef:
    quantiles: np.ndarray
    scale: float
    missing: float


@dataclass
class _CategoricalRef:
    shares: dict[Any, float]


def _grid() -> np.ndarray:
    import numpy as np

    return np.linspace(0.0, 1.0, QUANTILE_GRID)


def _numeric_values(values: Any) -> tuple[np.ndarray, float]:
    """(finite values, missing share) of a column."""
    import numpy as np
    import pandas as pd

    if isinstance(values, pd.Series) and values.dtype == "float64":
        array = values.to_numpy()
    else:
        array = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype="float64")
    finite = array[np.isfinite(array)]
    missing = 1.0 - finite.size / array.size if array.size else 0.0
    return finite, missing


def _numeric_ref(values: Any) -> _NumericRef:
    import numpy as np

    finite, missing = _numeric_values(values)
    if finite.size == 0:
        return _NumericRef(np.full(QUANTILE_GRID, np.nan), 1.0, missing)
    return _NumericRef(np.quantile(finite, _grid()), max(float(np.std(finite)), 1e-9), missing)


def _numeric_distance(ref: _NumericRef, values: Any) -> float:
    import numpy as np

    finite, missing = _numeric_values(values)
    gap = abs(missing - ref.missing)
    if finite.size == 0 or np.isnan(ref.quantiles[0]):
        return gap
    current = np.quantile(finite, _grid())
    return float(np.mean(np.abs(current - ref.quantiles))) / ref.scale + gap


def _category_shares(values: Any) -> dict[Any, float]:
    import pandas as pd

    series = pd.Series(values).astype(object).where(pd.notna(pd.Series(values)), MISSING)
    counts = series.value_counts(normalize=True, sort=False)
    return {k: float(v) for k, v in counts.items()}


def _categorical_distance(ref: _CategoricalRef, values: Any) -> float:
    import numpy as np

    current = _category_shares(values)
    keys = set(ref.shares) | set(current)
    p = np.array([ref.shares.get(k, 0.0) for k in keys])
    q = np.array([current.get(k, 0.0) for k in keys])
    m = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.where(p > 0, p * np.log(p / m), 0.0)
        right = np.where(q > 0, q * np.log(q / m), 0.0)
    return float(np.sqrt(max(left.sum() + right.sum(), 0.0) / 2.0))


@dataclass
class DriftCalibration:
    """A champion's reference per column, the calibrated bounds and the importance weights."""

    kinds: dict[str, Kind]  # every monitored column, the prediction included
    weights: dict[str, float]  # features only, summing to 1
    bounds: dict[str, float]
    day_rows: int  # median rows of a calibration day: current days are sampled to it
    calibration_days: list[str]
    quantile: float = CALIBRATION_QUANTILE
    references: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "bounds": self.bounds,
            "day_rows": self.day_rows,
            "calibration_days": [self.calibration_days[0], self.calibration_days[-1]]
            if self.calibration_days
            else [],
            "quantile": self.quantile,
        }

    def distance(self, column: str, values: Any) -> float:
        ref = self.references[column]
        if isinstance(ref, _NumericRef):
            return _numeric_distance(ref, values)
        return _categorical_distance(ref, values)


@dataclass(frozen=True)
class CalibratedDrift:
    """One day's calibrated drift: per column distance, bound and excess; the day's score."""

    score: float
    feature_score: float
    prediction_excess: float  # weighted: PREDICTION_WEIGHT x the prediction's excess
    columns: list[dict[str, Any]]  # column, weight, distance, bound, excess, contribution
    rows: int

    def ranked(self) -> list[dict[str, Any]]:
        """Drifted features (excess > 0), largest contribution to the score first."""
        drifted = [c for c in self.columns if c["excess"] > 0 and c["column"] != PREDICTION_COLUMN]
        return sorted(drifted, key=lambda c: (-c["contribution"], -c["weight"]))


def _reference(kind: Kind, values: Any) -> _NumericRef | _CategoricalRef:
    if kind == "numeric":
        return _numeric_ref(values)
    return _CategoricalRef(_category_shares(values))


def normalised_weights(importance: dict[str, float], features: list[str]) -> dict[str, float]:
    """The champion's importance over ``features`` summing to 1 (equal when all are zero)."""
    raw = {f: max(float(importance.get(f, 0.0)), 0.0) for f in features}
    raw = {f: (v if math.isfinite(v) else 0.0) for f, v in raw.items()}
    total = sum(raw.values())
    if total <= 0:
        return dict.fromkeys(features, 1.0 / len(features)) if features else {}
    return {f: v / total for f, v in raw.items()}


def calibrate(
    reference: pd.DataFrame,
    day_column: str,
    kinds: dict[str, Kind],
    importance: dict[str, float],
    quantile: float = CALIBRATION_QUANTILE,
) -> DriftCalibration:
    """Bounds of every column from the reference's own days (``day_column`` names them).

    ``kinds`` lists the features; the prediction column, when the reference has one, is
    monitored as a numeric column. Days with fewer than ``MIN_DAY_ROWS`` rows are left
    out; with fewer than ``MIN_CALIBRATION_DAYS`` days left there is nothing to calibrate
    on and the bounds are infinite (nothing can breach).
    """
    import numpy as np

    if not 0 < quantile <= 1:
        raise ValueError(f"the calibration quantile must be in (0, 1], got {quantile}")
    all_kinds: dict[str, Kind] = dict(kinds)
    if PREDICTION_COLUMN in reference.columns:
        all_kinds[PREDICTION_COLUMN] = "numeric"
    missing = [c for c in [*all_kinds, day_column] if c not in reference.columns]
    if missing:
        raise KeyError(f"the drift reference lacks the columns {missing}")
    references = {c: _reference(k, reference[c]) for c, k in all_kinds.items()}
    groups = [g for _, g in reference.groupby(day_column, sort=True) if len(g) >= MIN_DAY_ROWS]
    days = [str(g[day_column].iloc[0]) for g in groups]
    calibration = DriftCalibration(
        kinds=all_kinds,
        weights=normalised_weights(importance, list(kinds)),
        bounds={},
        day_rows=int(np.median([len(g) for g in groups])) if groups else 0,
        calibration_days=days,
        quantile=quantile,
        references=references,
    )
    for column in all_kinds:
        if len(groups) < MIN_CALIBRATION_DAYS:
            calibration.bounds[column] = math.inf
            continue
        distances = [calibration.distance(column, g[column]) for g in groups]
        bound = float(np.quantile(distances, quantile))
        # A column identical every day (a constant) still needs a positive bound.
        calibration.bounds[column] = max(bound, 1e-6)
    return calibration


def sample_day(current: pd.DataFrame, rows: int, seed: int = SAMPLE_SEED) -> pd.DataFrame:
    """The day's rows, sampled (seeded, without replacement) down to ``rows`` if larger."""
    if rows <= 0 or len(current) <= rows:
        return current
    return current.sample(n=rows, random_state=seed)


def score_day(calibration: DriftCalibration, current: pd.DataFrame) -> CalibratedDrift:
    """The calibrated, importance-weighted drift score of one day (see the module docstring)."""
    day = sample_day(current, calibration.day_rows)
    columns = []
    feature_score = 0.0
    prediction_excess = 0.0
    for column in calibration.kinds:
        if column not in day.columns or len(day) == 0:
            continue
        distance = calibration.distance(column, day[column])
        bound = calibration.bounds[column]
        excess = min(max(distance / bound - 1.0, 0.0), EXCESS_CAP) if math.isfinite(bound) else 0.0
        default = PREDICTION_WEIGHT if column == PREDICTION_COLUMN else 0.0
        weight = calibration.weights.get(column, default)
        contribution = weight * excess
        if column == PREDICTION_COLUMN:
            prediction_excess = contribution
        else:
            feature_score += contribution
        columns.append(
            {
                "column": column,
                "weight": float(weight),
                "distance": float(distance),
                "bound": float(bound),
                "excess": float(excess),
                "contribution": float(contribution),
            }
        )
    return CalibratedDrift(
        score=max(feature_score, prediction_excess),
        feature_score=feature_score,
        prediction_excess=prediction_excess,
        columns=columns,
        rows=len(day),
    )
