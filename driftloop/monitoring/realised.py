"""A day's realised metrics against the holdout metric of the model that scored it (the
performance partition's per-day row; the trigger judges the pooled window,
``driftloop.monitoring.performance``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from driftloop.data.contract import Contract
from driftloop.metrics import HIGHER_IS_BETTER, PRIMARY_METRIC, compute_metrics
from driftloop.monitoring.signals import ABSOLUTE_TOLERANCE, MIN_LABELLED_ROWS, RELATIVE_TOLERANCE
from driftloop.monitoring.trigger import performance_breached

# --------------------------------------------------------------------- performance


def default_tolerance(metric: str) -> tuple[float, bool]:
    """(tolerance, relative) for a primary metric.

    Bounded higher-is-better scores (ROC AUC, R2, precision): an absolute drop of 0.05.
    Error metrics (RMSE, MAE, log loss, Brier) have the target's scale, so an absolute
    tolerance means nothing across datasets: they may rise 10% above the holdout value.
    """
    if HIGHER_IS_BETTER.get(metric, True):
        return ABSOLUTE_TOLERANCE, False
    return RELATIVE_TOLERANCE, True


def performance_floor(reference: float, higher_is_better: bool, tolerance: float, relative: bool):
    if math.isnan(reference):
        return math.nan
    margin = tolerance * abs(reference) if relative else tolerance
    return reference - margin if higher_is_better else reference + margin


def holdout_reference(client: Any, version: Any, metric: str) -> float:
    """The champion's own holdout value of ``metric``: its run's ``holdout_<metric>``,
    else the ``driftloop.holdout_primary`` tag; NaN when neither is there."""
    tags = dict(version.tags or {})
    if version.run_id:
        try:
            metrics = client.get_run(version.run_id).data.metrics
        except Exception:  # a deleted run: fall back to the tag
            metrics = {}
        if f"holdout_{metric}" in metrics:
            return float(metrics[f"holdout_{metric}"])
    if tags.get("driftloop.primary_metric", metric) == metric:
        try:
            return float(tags.get("driftloop.holdout_primary", "nan"))
        except ValueError:
            return math.nan
    return math.nan


def realised_performance(
    contract: Contract,
    day: str,
    labels: np.ndarray,
    scores: np.ndarray,
    *,
    version: str,
    reference: float,
    tolerance: float | None = None,
    relative: bool | None = None,
    min_labelled_rows: int = MIN_LABELLED_ROWS,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """One performance row: the metrics on the labelled rows and the breach verdict.

    A day with fewer than ``min_labelled_rows`` labels is recorded but never breaches:
    a handful of labels says nothing about the model.
    """
    import numpy as np

    primary = PRIMARY_METRIC[contract.task]
    default_value, default_relative = default_tolerance(primary)
    tolerance = default_value if tolerance is None else tolerance
    relative = default_relative if relative is None else relative
    labels = np.asarray(labels, dtype="float64")
    scores = np.asarray(scores, dtype="float64")
    known = ~np.isnan(labels)
    metrics = compute_metrics(contract.task, labels[known], scores[known], threshold)
    higher = HIGHER_IS_BETTER[primary]
    value = metrics[primary]
    enough = int(known.sum()) >= min_labelled_rows
    breached = (
        enough
        and not math.isnan(reference)
        and performance_breached(value, reference, higher, tolerance, relative=relative)
    )
    return {
        "day": day,
        "model_version": str(version),
        "rows": len(labels),
        "labelled_rows": int(known.sum()),
        **{name: float(v) for name, v in metrics.items()},
        "primary_metric": primary,
        "value": float(value),
        "reference": float(reference),
        "tolerance": float(tolerance),
        "relative_tolerance": bool(relative),
        "floor": float(performance_floor(reference, higher, tolerance, relative)),
        "enough_labels": bool(enough),
        "breached": bool(breached),
    }
