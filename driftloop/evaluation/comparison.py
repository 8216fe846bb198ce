"""Evaluate a challenger against a reference model on the same holdout rows.

Everything here works on numbers already computed (labels and the two models' scores), so
it needs neither Dagster nor MLflow. The heart is a *paired* bootstrap: each resample
draws the same rows for both models, so the spread of the difference reflects how the
two models disagree, not the (much larger) noise of either metric on its own.

Sign convention: every ``diff`` in this module is an *improvement*, sign-adjusted so that a
positive number means the challenger is better (for ROC AUC: challenger - reference; for
RMSE: reference - challenger).

Day clusters: when the holdout names each row's day and spans at least
``MIN_RESAMPLED_DAYS`` days, a resample draws whole days (the cluster bootstrap of
driftloop.evaluation.bootstrap): rows of a day share its weather, its calendar and its
step of a moving concept, so their differences are not independent, and an interval from
resampled rows would be as narrow as the row count makes it, however much the difference
swings from day to day. Fewer days than that give too few distinct resamples, and rows
are resampled instead; the result says which (``resampled_days``).

Slice uncertainty: each slice gets its own paired percentile bootstrap from the very same
resamples as the overall metric (a resample of the holdout is also a resample of every
slice in it, with a slice size that varies as it would in reality). This is exact where a
normal approximation of a slice's AUC difference would be poor (small, unbalanced slices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from driftloop.data.contract import ColumnType, Contract, Task
from driftloop.evaluation.bootstrap import (
    DEFAULT_BOOTSTRAP_SAMPLES,
    DEFAULT_SEED,
    paired_bootstrap,
    point_metric,
)
from driftloop.evaluation.explain import importance_table
from driftloop.floats import optional_float
from driftloop.metrics import (
    HIGHER_IS_BETTER,
    INTERVAL_CONFIDENCE,
    PRIMARY_METRIC,
    compute_metrics,
    percentile_interval,
)
from driftloop.names import DAY

if TYPE_CHECKING:
    from driftloop.evaluation.explain import Explanation

DEFAULT_CONFIDENCE = INTERVAL_CONFIDENCE  # the report's interval is the gate's
CALIBRATION_BINS = 10
# A numeric slice column with more distinct values than this is cut into quantile bins.
_MAX_NUMERIC_SLICE_VALUES = 12
_NUMERIC_SLICE_BINS = 5
MISSING = "(missing)"
# Fewer holdout days than this give too few distinct day resamples: rows are resampled.
MIN_RESAMPLED_DAYS = 5


@dataclass
class EvalResult:
    """Everything a report and the gate need; JSON-friendly through ``to_dict``."""

    dataset: str
    task: Task
    metric: str
    higher_is_better: bool
    challenger_name: str
    reference_name: str
    n_rows: int
    n_positive: int | None
    challenger_metrics: dict[str, float]
    reference_metrics: dict[str, float]
    # Sign-adjusted point estimate of the primary metric difference (positive = better).
    diff: float
    boot_mean: float
    ci_low: float
    ci_high: float
    confidence: float
    bootstrap_samples: int
    seed: int
    # One row per slice value: slice, value, rows, positives, challenger, reference, diff,
    # ci_low, ci_high, estimable. Row i of ``slice_boot`` holds that slice's resampled diffs.
    slices: pd.DataFrame
    slice_boot: np.ndarray
    # Binary only: model, bin, count, mean_predicted, observed_rate (10 quantile bins each).
    calibration: pd.DataFrame | None
    boot_diffs: np.ndarray = field(repr=False)
    skipped_slices: list[str] = field(default_factory=list)
    # The challenger's mean absolute contribution per feature, overall ("(all)") and per
    # slice value (driftloop.evaluation.explain.importance_table); None when not explained.
    importance: pd.DataFrame | None = None
    # The number of holdout days the bootstrap drew whole; None when it drew rows.
    resampled_days: int | None = None

    @property
    def resampled(self) -> str:
        """What a bootstrap resample drew, in words."""
        if self.resampled_days is None:
            return f"its {self.n_rows:,} rows"
        return f"its {self.resampled_days} days (whole days)"

    @property
    def overall(self) -> pd.DataFrame:
        """Overall metrics side by side: metric, challenger, reference, diff (sign-adjusted)."""
        rows = []
        for name, value in self.challenger_metrics.items():
            ref = self.reference_metrics.get(name, math.nan)
            higher = HIGHER_IS_BETTER.get(name)
            # positive_rate has no direction: neither more nor fewer positives is better.
            diff = math.nan if higher is None else (value - ref if higher else ref - value)
            better = "" if higher is None else "higher" if higher else "lower"
            rows.append(
                {
                    "metric": name,
                    "better": better,
                    "challenger": value,
                    "reference": ref,
                    "change": value - ref,
                    "diff": diff,
                }
            )
        columns = ["metric", "better", "challenger", "reference", "change", "diff"]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "task": self.task.value,
            "metric": self.metric,
            "higher_is_better": self.higher_is_better,
            "challenger": self.challenger_name,
            "reference": self.reference_name,
            "n_rows": self.n_rows,
            "n_positive": self.n_positive,
            "challenger_metrics": _clean(self.challenger_metrics),
            "reference_metrics": _clean(self.reference_metrics),
            "diff": optional_float(self.diff),
            "bootstrap": {
                "mean": optional_float(self.boot_mean),
                "ci_low": optional_float(self.ci_low),
                "ci_high": optional_float(self.ci_high),
                "confidence": self.confidence,
                "samples": self.bootstrap_samples,
                "seed": self.seed,
                "resampled_days": self.resampled_days,
            },
            "slices": _records(self.slices),
            "calibration": None if self.calibration is None else _records(self.calibration),
            "skipped_slices": list(self.skipped_slices),
            "importance": None if self.importance is None else _records(self.importance),
        }


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: optional_float(v) for k, v in values.items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        out.append(
            {
                k: (optional_float(v) if isinstance(v, float | np.floating) else _plain(v))
                for k, v in row.items()
            }
        )
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


# --------------------------------------------------------------------------------------
# Slices and calibration


def slice_labels(contract: Contract, frame: pd.DataFrame, column: str) -> pd.Series:
    """The slice value of each row as a string; many-valued numeric columns become quintiles."""
    values = frame[column]
    numeric = contract.feature_type(column) == ColumnType.numeric and pd.api.types.is_numeric_dtype(
        values
    )
    if numeric and values.nunique(dropna=True) > _MAX_NUMERIC_SLICE_VALUES:
        binned = pd.qcut(values, _NUMERIC_SLICE_BINS, duplicates="drop")
        labels = binned.astype(str)
        return labels.where(values.notna(), MISSING)
    if numeric:
        labels = values.map(lambda v: f"{v:g}" if pd.notna(v) else MISSING)
        return labels.astype(str)
    return values.astype("string").fillna(MISSING).astype(str)


def calibration_table(
    y: np.ndarray, scores: dict[str, np.ndarray], bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """Per model, equal-count bins of the predicted probability: mean predicted vs observed."""
    rows = []
    for model, score in scores.items():
        if len(score) == 0:
            continue
        # Rank first so ties cannot collapse bins: every bin holds ~n/bins rows.
        ranks = pd.Series(score).rank(method="first").to_numpy()
        k = min(bins, len(score))
        bin_of = np.minimum(((ranks - 1) * k / len(score)).astype(int), k - 1)
        frame = pd.DataFrame({"bin": bin_of + 1, "p": score, "y": y})
        grouped = frame.groupby("bin").agg(
            count=("y", "size"),
            mean_predicted=("p", "mean"),
            observed_rate=("y", "mean"),
            min_predicted=("p", "min"),
            max_predicted=("p", "max"),
        )
        for b, r in grouped.iterrows():
            rows.append({"model": model, "bin": int(b), **r.to_dict()})
    table = pd.DataFrame(
        rows,
        columns=[
            "model",
            "bin",
            "count",
            "mean_predicted",
            "observed_rate",
            "min_predicted",
            "max_predicted",
        ],
    )
    table["count"] = table["count"].astype(int)
    return table


# --------------------------------------------------------------------------------------


def evaluate(
    contract: Contract,
    holdout: pd.DataFrame,
    challenger_scores: np.ndarray | pd.Series | list[float],
    reference_scores: np.ndarray | pd.Series | list[float],
    reference_name: str,
    *,
    challenger_name: str = "challenger",
    label_column: str = "label",
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    explanation: Explanation | None = None,
    resample_by: str | None = DAY,
) -> EvalResult:
    """Compare two models' scores on the same holdout rows.

    ``holdout`` is a features-table frame (it must hold ``label`` and the slice columns);
    the two score arrays (and the challenger's ``explanation``, when given) align with its
    rows. Rows without a label are left out. The bootstrap draws whole values of the
    ``resample_by`` column (the day) when the holdout has it with at least
    ``MIN_RESAMPLED_DAYS`` of them, else rows.
    """
    challenger_scores = np.asarray(challenger_scores, dtype=np.float64)
    reference_scores = np.asarray(reference_scores, dtype=np.float64)
    if not len(challenger_scores) == len(reference_scores) == len(holdout):
        raise ValueError(
            f"scores must align with the holdout: {len(holdout)} rows, "
            f"{len(challenger_scores)} challenger and {len(reference_scores)} reference scores"
        )
    labelled = holdout[label_column].notna().to_numpy()
    frame = holdout.loc[labelled].reset_index(drop=True)
    y = frame[label_column].to_numpy(dtype=np.float64)
    s_c = challenger_scores[labelled]
    s_r = reference_scores[labelled]

    task = contract.task
    metric = PRIMARY_METRIC[task]
    higher = bool(HIGHER_IS_BETTER[metric])
    sign = 1.0 if higher else -1.0

    def metrics_of(score: np.ndarray) -> dict[str, float]:
        if len(y) == 0:
            return {metric: math.nan}
        try:
            return {k: float(v) for k, v in compute_metrics(task, y, score).items()}
        except ValueError:  # e.g. a single class: AUC is undefined
            return {metric: point_metric(metric, y, score)}

    m_c, m_r = metrics_of(s_c), metrics_of(s_r)
    diff = sign * (m_c.get(metric, math.nan) - m_r.get(metric, math.nan))

    # Slices: one group of row indices per slice value.
    keys: list[tuple[str, str]] = []
    groups: list[np.ndarray] = []
    skipped = [c for c in contract.slices if c not in frame.columns]
    for column in (c for c in contract.slices if c in frame.columns):
        labels = slice_labels(contract, frame, column)
        for value, idx in labels.groupby(labels, sort=True).indices.items():
            keys.append((column, str(value)))
            groups.append(np.asarray(idx))

    clusters, resampled_days = None, None
    if resample_by is not None and resample_by in frame.columns:
        codes, days = pd.factorize(frame[resample_by], sort=True)
        if len(days) >= MIN_RESAMPLED_DAYS and (codes >= 0).all():
            clusters, resampled_days = codes, len(days)
    boot, slice_boot = paired_bootstrap(
        metric, higher, y, s_c, s_r, groups=groups, clusters=clusters, samples=samples, seed=seed
    )
    ci_low, ci_high = percentile_interval(boot, confidence)
    finite = boot[np.isfinite(boot)]
    boot_mean = float(finite.mean()) if len(finite) else math.nan

    slice_rows = []
    for (column, value), idx, resampled in zip(keys, groups, slice_boot, strict=True):
        mc = point_metric(metric, y[idx], s_c[idx])
        mr = point_metric(metric, y[idx], s_r[idx])
        low, high = percentile_interval(resampled, confidence)
        # Too many resamples without both classes: the interval would be biased.
        estimable = bool(np.isfinite(resampled).mean() >= 0.9) and math.isfinite(mc - mr)
        slice_rows.append(
            {
                "slice": column,
                "value": value,
                "rows": len(idx),
                "positives": int(y[idx].sum()) if task == Task.binary else None,
                "challenger": mc,
                "reference": mr,
                "diff": sign * (mc - mr),
                "ci_low": low,
                "ci_high": high,
                "estimable": estimable,
            }
        )
    slices = pd.DataFrame(
        slice_rows,
        columns=[
            "slice",
            "value",
            "rows",
            "positives",
            "challenger",
            "reference",
            "diff",
            "ci_low",
            "ci_high",
            "estimable",
        ],
    )

    importance = None
    if explanation is not None:
        if len(explanation) != len(holdout):
            raise ValueError(f"explanation has {len(explanation)} rows, holdout {len(holdout)}")
        by_slice = dict(zip(keys, groups, strict=True))
        importance = importance_table(explanation.rows(labelled), by_slice)

    calibration = None
    if task == Task.binary:
        calibration = calibration_table(y, {challenger_name: s_c, reference_name: s_r})

    return EvalResult(
        dataset=contract.name,
        task=task,
        metric=metric,
        higher_is_better=higher,
        challenger_name=challenger_name,
        reference_name=reference_name,
        n_rows=len(y),
        n_positive=int(y.sum()) if task == Task.binary else None,
        challenger_metrics=m_c,
        reference_metrics=m_r,
        diff=diff,
        boot_mean=boot_mean,
        ci_low=ci_low,
        ci_high=ci_high,
        confidence=confidence,
        bootstrap_samples=samples,
        seed=seed,
        slices=slices,
        slice_boot=slice_boot,
        calibration=calibration,
        boot_diffs=boot,
        skipped_slices=skipped,
        importance=importance,
        resampled_days=resampled_days,
    )
