"""The paired bootstrap: metrics under many resampling weight vectors at once.

Each resample draws the same rows for both models, so the spread of the difference
reflects how the two models disagree, not the (much larger) noise of either metric on its
own. Differences are sign-adjusted: positive means the challenger is better.

Rows of one day are not independent draws: a storm, a holiday or a shift in the concept
moves every row of its day together, and so does the difference between two models. Given
a cluster per row (the holdout's day), a resample draws whole clusters with replacement
(the cluster bootstrap), so the interval carries the day-to-day variation of the
difference, which resampling rows alone hides behind the row count.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_BOOTSTRAP_SAMPLES = 300
DEFAULT_SEED = 20130101
# Resamples are processed in chunks so memory stays near chunk x rows x 8 bytes.
_CHUNK = 25

# Weighted metrics: one row of weights per bootstrap resample (multinomial counts).


class _WeightedMetric:
    """A metric of one model on a set of rows, evaluated under many weight vectors at once.

    ``rows`` selects the rows (a slice) out of the full weight matrix it is called with, so
    one gather per call picks the slice and sorts it in the same step.
    """

    def __init__(
        self, metric: str, y: np.ndarray, score: np.ndarray, rows: np.ndarray | None = None
    ) -> None:
        self.metric = metric
        rows = np.arange(len(y)) if rows is None else np.asarray(rows)
        y = np.asarray(y, dtype=np.float64)[rows]
        score = np.asarray(score, dtype=np.float64)[rows]
        self.y = y
        if metric == "roc_auc":
            # Sort once; tied scores form a group whose negatives count one half.
            order = np.argsort(score, kind="mergesort")
            s = score[order]
            self.take = rows[order]
            self.y32 = y[order].astype(np.float32)
            new_group = np.r_[True, s[1:] != s[:-1]]
            self.ties = not bool(new_group.all())
            if self.ties:
                starts = np.flatnonzero(new_group)
                ends = np.r_[starts[1:], len(s)] - 1
                sizes = np.diff(np.r_[starts, len(s)])
                self.group_start = np.repeat(starts, sizes)
                self.group_end = np.repeat(ends, sizes)
            return
        self.take = rows
        if metric == "log_loss":
            p = np.clip(score, 1e-7, 1 - 1e-7)  # as driftloop.metrics does
            self.loss = -(y * np.log(p) + (1 - y) * np.log(1 - p))
        elif metric in ("brier", "rmse", "r2"):
            self.loss = (y - score) ** 2
        elif metric == "mae":
            self.loss = np.abs(y - score)
        else:
            raise ValueError(f"no bootstrap implementation for metric {metric!r}")

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        """weights: (resamples, all rows) -> metric per resample (NaN where undefined)."""
        w = weights[:, self.take]
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.metric == "roc_auc":
                # Weighted Mann-Whitney: each positive counts the negatives ranked below it,
                # plus half of those tied with it. float32 is exact for these integer counts.
                pos = w * self.y32
                neg = w - pos
                incl = np.cumsum(neg, axis=1, dtype=np.float32)
                if self.ties:
                    below = (incl - neg)[:, self.group_start]
                    mid = 0.5 * (below + incl[:, self.group_end])
                else:
                    mid = incl - 0.5 * neg
                num = np.einsum("ij,ij->i", pos, mid, dtype=np.float64)
                den = pos.sum(axis=1, dtype=np.float64) * neg.sum(axis=1, dtype=np.float64)
                return np.where(den > 0, num / den, np.nan)
            w = w.astype(np.float64)
            total = w.sum(axis=1)
            mean_loss = (w @ self.loss) / total
            if self.metric == "rmse":
                return np.sqrt(mean_loss)
            if self.metric == "r2":
                mean_y = (w @ self.y) / total
                var = (w @ self.y**2) / total - mean_y**2
                return np.where(var > 0, 1.0 - mean_loss / var, np.nan)
            return mean_loss


def weighted_metric(metric: str, y: np.ndarray, score: np.ndarray, weights: np.ndarray):
    """The metric under each row of ``weights`` (a 2-D array: resamples x rows)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float32))
    return _WeightedMetric(metric, np.asarray(y), np.asarray(score))(weights)


def point_metric(metric: str, y: np.ndarray, score: np.ndarray) -> float:
    """The metric with every row weighted once (NaN when undefined, e.g. one class only)."""
    if len(y) == 0:
        return math.nan
    return float(weighted_metric(metric, y, score, np.ones((1, len(y))))[0])


def _resample_weights(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """Multinomial bootstrap counts: how often each row is drawn in each resample."""
    draws = rng.integers(0, n, size=(resamples, n))
    draws += (np.arange(resamples) * n)[:, None]
    counts = np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n)
    return counts.astype(np.float32)


def _cluster_weights(
    rng: np.random.Generator, resamples: int, clusters: np.ndarray, n_clusters: int
) -> np.ndarray:
    """Cluster bootstrap counts: each row weighs as often as its cluster is drawn."""
    return _resample_weights(rng, resamples, n_clusters)[:, clusters]


def metric_resamples(
    metric: str,
    y: np.ndarray,
    score: np.ndarray,
    *,
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> np.ndarray:
    """The metric of one model under ``samples`` bootstrap resamples of its rows (for an
    interval around a single metric, e.g. one canary arm's online figure)."""
    n = len(y)
    out = np.full(samples, np.nan)
    if n == 0 or samples <= 0:
        return out
    scored = _WeightedMetric(metric, np.asarray(y, dtype=np.float64), np.asarray(score, float))
    rng = np.random.default_rng(seed)
    for start in range(0, samples, _CHUNK):
        stop = min(start + _CHUNK, samples)
        out[start:stop] = scored(_resample_weights(rng, stop - start, n))
    return out


def paired_bootstrap(
    metric: str,
    higher_is_better: bool,
    y: np.ndarray,
    challenger: np.ndarray,
    reference: np.ndarray,
    *,
    groups: list[np.ndarray] | None = None,
    clusters: np.ndarray | None = None,
    samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[np.ndarray, np.ndarray]:
    """Resampled sign-adjusted differences, overall and for each group of row indices.

    Returns ``(overall, per_group)`` with shapes ``(samples,)`` and ``(len(groups), samples)``.
    Both models are scored on the same resampled rows (a paired bootstrap); the seed makes
    the result reproducible. ``clusters`` (a code 0..k-1 per row, e.g. the row's day)
    resamples whole clusters instead of rows.
    """
    groups = groups or []
    n = len(y)
    sign = 1.0 if higher_is_better else -1.0
    overall = np.full(samples, np.nan)
    per_group = np.full((len(groups), samples), np.nan)
    if n == 0 or samples <= 0:
        return overall, per_group
    y = np.asarray(y, dtype=np.float64)
    challenger = np.asarray(challenger, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    all_c = _WeightedMetric(metric, y, challenger)
    all_r = _WeightedMetric(metric, y, reference)
    sub = [
        (_WeightedMetric(metric, y, challenger, idx), _WeightedMetric(metric, y, reference, idx))
        for idx in groups
        if len(idx)
    ]
    nonempty = [g for g, idx in enumerate(groups) if len(idx)]
    if clusters is not None:
        clusters = np.asarray(clusters)
        if clusters.shape != (n,) or clusters.min() < 0:
            raise ValueError(f"clusters must give a code >= 0 for each of the {n} rows")
        n_clusters = int(clusters.max()) + 1
    rng = np.random.default_rng(seed)
    for start in range(0, samples, _CHUNK):
        stop = min(start + _CHUNK, samples)
        if clusters is None:
            weights = _resample_weights(rng, stop - start, n)
        else:
            weights = _cluster_weights(rng, stop - start, clusters, n_clusters)
        overall[start:stop] = sign * (all_c(weights) - all_r(weights))
        for g, (m_c, m_r) in zip(nonempty, sub, strict=True):
            per_group[g, start:stop] = sign * (m_c(weights) - m_r(weights))
    return overall, per_group
