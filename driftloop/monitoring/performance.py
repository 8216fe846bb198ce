"""Performance judged at any volume: realised (or estimated) metrics pooled over a trailing
window of days, against a floor set by the holdout metric's sampling noise at that row count.

A day of 24 labelled rows says little; the last ``window`` days together say more. The
floor is not a fixed tolerance: it is the (1 - confidence) quantile of the champion's own
holdout metric bootstrapped at the pooled row count (the confidence quantile for a
lower-is-better metric), so a small pool gets a wide margin and a large one a narrow one.
Below the floor the pool is worse than the champion's holdout could plausibly be by
chance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

from driftloop.metrics import HIGHER_IS_BETTER

BOOTSTRAP_SAMPLES = 200
BOOTSTRAP_SEED = 20130102
# Pool sizes are rounded to steps of 10% when bootstrapping, so a floor is reused.
SIZE_STEP = 1.1
MIN_POOLED_ROWS = 20


def metric_value(metric: str, labels: np.ndarray, scores: np.ndarray) -> float:
    """One metric on labelled rows (NaN where undefined, e.g. AUC with one class)."""
    import numpy as np

    y = np.asarray(labels, dtype="float64")
    s = np.asarray(scores, dtype="float64")
    if y.size == 0:
        return math.nan
    if metric == "roc_auc":
        order = np.argsort(s, kind="stable")
        return sorted_roc_auc(y[order], s[order])
    if metric == "rmse":
        return float(np.sqrt(np.mean((y - s) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(y - s)))
    raise ValueError(f"no pooled evaluation for the metric {metric!r}")


def sorted_roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of rows already sorted by score (Mann-Whitney U with average ranks for ties;
    equal to scikit-learn's roc_auc_score). NaN with a single class."""
    import numpy as np

    n = labels.size
    positives = float(labels.sum())
    negatives = n - positives
    if positives == 0 or negatives == 0:
        return math.nan
    distinct = np.empty(n, dtype=bool)
    distinct[0] = True
    np.not_equal(scores[1:], scores[:-1], out=distinct[1:])
    starts = np.flatnonzero(distinct)
    counts = np.diff(np.append(starts, n))
    ranks = np.repeat(starts + (counts + 1) / 2.0, counts)
    rank_sum = float(ranks[labels == 1].sum())
    return (rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives)


def rounded_size(rows: int) -> int:
    """``rows`` rounded to the nearest power of SIZE_STEP (at least 1)."""
    if rows <= 1:
        return 1
    return max(1, round(SIZE_STEP ** round(math.log(rows) / math.log(SIZE_STEP))))


def bootstrap_floor(
    metric: str,
    labels: np.ndarray,
    scores: np.ndarray,
    rows: int,
    confidence: float,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> float:
    """The floor of ``metric`` for a pool of ``rows`` rows: the holdout resampled at that
    size ``samples`` times; the (1 - confidence) quantile (confidence for lower-is-better)."""
    import numpy as np

    y = np.asarray(labels, dtype="float64")
    s = np.asarray(scores, dtype="float64")
    known = ~np.isnan(y)
    y, s = y[known], s[known]
    if y.size == 0 or rows <= 0:
        return math.nan
    rng = np.random.default_rng(seed)
    # Sorted once by score, a sorted sample of row positions is sorted by score too.
    order = np.argsort(s, kind="stable")
    y, s = y[order], s[order]
    values = []
    for _ in range(samples):
        pick = np.sort(rng.integers(0, y.size, size=rows))
        if metric == "roc_auc":
            values.append(sorted_roc_auc(y[pick], s[pick]))
        else:
            values.append(metric_value(metric, y[pick], s[pick]))
    values = np.asarray(values)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan
    higher = HIGHER_IS_BETTER.get(metric, True)
    return float(np.quantile(values, 1 - confidence if higher else confidence))


@dataclass(frozen=True)
class PooledPerformance:
    """The pool's metric against the floor; ``breached`` only when both are known."""

    metric: str
    value: float
    reference: float
    floor: float
    rows: int
    days: int
    breached: bool
    kind: str  # "realised" or "estimated"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sentence(self) -> str:
        if math.isnan(self.value):
            return f"{self.kind} {self.metric} unknown ({self.rows} rows in {self.days} days)"
        relation = "below" if self.breached else "within"
        if not HIGHER_IS_BETTER.get(self.metric, True):
            relation = "above" if self.breached else "within"
        return (
            f"{self.kind} {self.metric} {self.value:.4f} over {self.days} days "
            f"({self.rows} rows) {relation} the floor {self.floor:.4f} "
            f"(holdout {self.reference:.4f})"
        )


class FloorCache:
    """Bootstrap floors of one champion, reused across pools of about the same size."""

    def __init__(self, metric: str, labels: np.ndarray, scores: np.ndarray, confidence: float):
        self.metric = metric
        self.labels = labels
        self.scores = scores
        self.confidence = confidence
        self._floors: dict[int, float] = {}

    def floor(self, rows: int) -> float:
        size = rounded_size(rows)
        if size not in self._floors:
            self._floors[size] = bootstrap_floor(
                self.metric, self.labels, self.scores, size, self.confidence
            )
        return self._floors[size]


def judge(
    kind: str,
    metric: str,
    value: float,
    reference: float,
    rows: int,
    days: int,
    floors: FloorCache,
    min_rows: int = MIN_POOLED_ROWS,
) -> PooledPerformance:
    """Whether a pooled value breaches the champion's floor at the pool's size."""
    floor = floors.floor(rows) if rows >= min_rows else math.nan
    higher = HIGHER_IS_BETTER.get(metric, True)
    known = not (math.isnan(value) or math.isnan(floor))
    breached = known and (value < floor if higher else value > floor)
    return PooledPerformance(
        metric=metric,
        value=float(value),
        reference=float(reference),
        floor=float(floor),
        rows=int(rows),
        days=int(days),
        breached=bool(breached),
        kind=kind,
    )
