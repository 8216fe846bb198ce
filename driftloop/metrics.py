"""Model quality metrics per task, and which way is better for each of them (shared by
training, evaluation, monitoring and the backtest)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from driftloop.data.contract import Task

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# The one number that ranks models of a task (search, gate, dashboards).
PRIMARY_METRIC: dict[Task, str] = {Task.binary: "roc_auc", Task.regression: "rmse"}

# Direction of every quality metric compute_metrics returns. positive_rate is descriptive
# (the share of rows predicted positive), not a quality metric, so it has no direction.
HIGHER_IS_BETTER: dict[str, bool] = {
    "roc_auc": True,
    "log_loss": False,
    "brier": False,
    "precision": True,
    "recall": True,
    "rmse": False,
    "mae": False,
    "r2": True,
}

# How reports and gate reasons name the primary metrics.
METRIC_LABELS = {"roc_auc": "ROC AUC", "rmse": "RMSE", "log_loss": "log loss", "mae": "MAE"}

# The two-sided interval of a paired metric difference that the eval report shows and the
# gate judges by default: its lower end is a one-sided 95% bound.
INTERVAL_CONFIDENCE = 0.90

BINARY_METRICS = ("roc_auc", "log_loss", "brier", "precision", "recall", "positive_rate")
REGRESSION_METRICS = ("rmse", "mae", "r2")

# Scores are clipped before log loss so a confident miss costs a large but finite amount.
_EPS = 1e-7


def metric_names(task: Task) -> tuple[str, ...]:
    return BINARY_METRICS if Task(task) == Task.binary else REGRESSION_METRICS


def is_better(metric: str, candidate: float, reference: float) -> bool:
    """True when candidate is strictly better than reference for this metric (NaN never is)."""
    if math.isnan(candidate):
        return False
    if math.isnan(reference):
        return True
    return candidate > reference if HIGHER_IS_BETTER[metric] else candidate < reference


def compute_metrics(task: Task, y_true, y_score, threshold: float = 0.5) -> dict[str, float]:
    """Holdout/validation metrics; a metric that is undefined on this data is NaN, not an error.

    Binary: y_true in {0, 1}, y_score the probability of 1; precision/recall/positive_rate
    use `y_score >= threshold`. Regression: y_score is the predicted value.
    """
    import numpy as np

    y = np.asarray(y_true, dtype="float64").ravel()
    s = np.asarray(y_score, dtype="float64").ravel()
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.size} values but y_score has {s.size}")
    task = Task(task)
    if y.size == 0:
        return dict.fromkeys(metric_names(task), math.nan)
    if np.isnan(s).any():
        raise ValueError("y_score contains NaN: the model produced no prediction for some rows")

    from sklearn import metrics as skm  # heavy: imported on use

    if task == Task.regression:
        return {
            "rmse": float(np.sqrt(np.mean((y - s) ** 2))),
            "mae": float(np.mean(np.abs(y - s))),
            "r2": float(skm.r2_score(y, s)) if y.size > 1 else math.nan,
        }

    predicted = (s >= threshold).astype("int64")
    clipped = np.clip(s, _EPS, 1 - _EPS)
    both_classes = np.unique(y).size == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, s)) if both_classes else math.nan,
        "log_loss": float(skm.log_loss(y, clipped, labels=[0, 1])),
        "brier": float(np.mean((s - y) ** 2)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "positive_rate": float(predicted.mean()),
    }


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval, ignoring resamples where the metric was undefined."""
    import numpy as np

    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return math.nan, math.nan
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def expected_calibration_error(calibration: pd.DataFrame, model: str) -> float:
    """Row-weighted mean |mean predicted - observed rate| over the bins of one model."""
    part = calibration[calibration["model"] == model]
    if part.empty:
        return math.nan
    gap = (part["mean_predicted"] - part["observed_rate"]).abs()
    return float((gap * part["count"]).sum() / part["count"].sum())
