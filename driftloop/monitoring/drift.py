"""Fast per-column data drift whose verdicts agree with Evidently 0.7's DataDriftPreset.

Evidently's preset (``evidently.presets.drift.DataDriftPreset``) is slow and memory-hungry
at a million rows a side (the drift benchmark, docs/performance.md). This module applies
the same rules - the same test per column, the same thresholds, the same NaN handling, the
same dataset-level share rule - with sorted numpy arrays and value counts instead of
pandas copies, so the monitoring assets can run it on every full partition.
``driftloop.monitoring.drift_report`` renders Evidently's own HTML page on a sample for
people to look at.

The rules, as found in Evidently 0.7.23's source:

- Which test (``legacy/calculations/stattests/registry.py::_get_default_stattest``), decided
  on the *reference* values left after dropping NaN and +-inf, and ``n_values`` = number of
  distinct non-missing values over both sides together:
  - reference has more than 1000 values: numeric -> normed Wasserstein distance
    (``n_values > 5``) or Jensen-Shannon distance (``n_values <= 5``); categorical ->
    Jensen-Shannon distance. Threshold 0.1, drift when ``score >= 0.1``.
  - reference has 1000 values or fewer: numeric -> two-sample Kolmogorov-Smirnov
    (``n_values > 5``), chi-square (3-5 values) or a two-proportion Z test (<= 2 values);
    categorical -> chi-square (``n_values > 2``) or Z test. Threshold 0.05 on the p-value,
    drift when ``p <= 0.05`` for K-S and ``p < 0.05`` for chi-square and Z.
- NaN (``legacy/calculations/data_drift.py::get_one_column_drift``): +-inf is turned into
  NaN, then NaN is dropped on each side before the test; an empty side is an error there.
- Normed Wasserstein (``stattests/wasserstein_distance_norm.py``):
  ``scipy.stats.wasserstein_distance(ref, cur) / max(np.std(ref), 0.001)`` (population std).
- Jensen-Shannon (``stattests/jensenshannon.py`` + ``stattests/utils.py::get_binned_data``):
  shares of each distinct value over the union of values seen on either side (no
  smoothing of zeros), ``scipy.spatial.distance.jensenshannon`` with natural log. (Its
  Sturges-histogram branch applies only to numeric columns with more than 20 distinct
  reference values, which the default choice never sends to Jensen-Shannon.)
- Chi-square (``stattests/chisquare_stattest.py``): expected = reference counts scaled to
  the current size, ``scipy.stats.chisquare``; Z (``stattests/z_stattest.py``): share of
  values other than the smallest one on each side, pooled two-sided Z test, p = 1 when
  both sides hold the same single value.
- Numeric vs categorical: the preset takes the types from the ``DataDefinition``
  (``core/datasets.py``); when none is declared, ``infer_column_type`` makes floats
  numeric, integers with at most 10 distinct values categorical, strings categorical (or
  text when over half are distinct), bool and pandas category categorical. Here the
  caller always declares the kind, as the contract does.
- Dataset drift (``legacy/calculations/data_drift.py::get_dataset_drift``):
  ``share = drifted / columns``; dataset drift when ``share >= drift_share`` (0.5).

Deliberate deviations:

- Numeric values are centred on the reference mean and sorted as float32 for the
  Wasserstein distance (half the memory, faster sorting); the distance itself is exact
  for the sorted samples (no binning, no grid; ``wasserstein_sorted``), so the normed
  score differs from scipy's by about 1e-7 (bound in ``sorted_centred``). The
  distinct-value counts that pick the test are exact (float64).
- A column with no usable value on one side is reported with ``method="skipped"``,
  score NaN, not drifted, and left out of the share, instead of failing the whole table
  (Evidently raises). The null rates are the data-quality checks' business.
- Missing shares count NaN/None and +-inf, since all are dropped before the test.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


from driftloop.monitoring.count_tests import (
    aligned_counts,
    chisquare_p_value,
    jensenshannon,
    z_p_value,
)
from driftloop.monitoring.wasserstein import (
    as_float_array,
    distinct_sorted,
    finite_values,
    sorted_centred,
    wasserstein_sorted,
)

Kind = Literal["numeric", "categorical"]

# Evidently's limits and default thresholds (see the module docstring for where).
SMALL_SAMPLE_MAX_ROWS = 1000
FEW_VALUES_MAX = 5
DISTANCE_THRESHOLD = 0.1
P_VALUE_THRESHOLD = 0.05

# Our method name -> Evidently's display name, as it appears in ``snapshot.dict()``.
EVIDENTLY_METHOD_NAMES = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
    "ks": "K-S p_value",
    "chisquare": "chi-square p_value",
    "z": "Z-test p_value",
}
P_VALUE_METHODS = frozenset({"ks", "chisquare", "z"})
SKIPPED = "skipped"


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift test. ``score`` is a distance, or a p-value for small samples."""

    column: str
    kind: Kind
    method: str
    score: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    reference_missing_share: float
    current_missing_share: float

    @property
    def is_p_value(self) -> bool:
        return self.method in P_VALUE_METHODS

    @property
    def strength(self) -> float:
        """How far past its threshold the column is (1.0 = at the threshold), for ranking.

        Distances: score / threshold. p-values: log(p) / log(threshold), so a smaller p
        ranks higher. NaN for a skipped column.
        """
        if self.method == SKIPPED or math.isnan(self.score):
            return math.nan
        if self.is_p_value:
            return math.log(max(self.score, 1e-300)) / math.log(self.threshold)
        return self.score / self.threshold

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class DriftSummary:
    """All columns' results and Evidently's dataset-level rule over them."""

    columns: list[ColumnDrift]
    share_drifted: float
    dataset_drifted: bool
    top: list[str]  # drifted columns, most drifted first
    drift_share_threshold: float = 0.5

    @property
    def drifted_columns(self) -> list[str]:
        return [c.column for c in self.columns if c.drifted]

    def column(self, name: str) -> ColumnDrift:
        for result in self.columns:
            if result.column == name:
                return result
        raise KeyError(name)

    def to_dict(self) -> dict[str, object]:
        return {
            "share_drifted": self.share_drifted,
            "dataset_drifted": self.dataset_drifted,
            "drift_share_threshold": self.drift_share_threshold,
            "top": list(self.top),
            "columns": [c.to_dict() for c in self.columns],
        }


# ---------------------------------------------------------------------------- numeric


def _numeric_drift(
    column: str, reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray
) -> ColumnDrift:
    import numpy as np
    import pandas as pd

    ref_all = as_float_array(reference)
    cur_all = as_float_array(current)
    ref = finite_values(ref_all)
    cur = finite_values(cur_all)
    base = {
        "column": column,
        "kind": "numeric",
        "reference_rows": len(ref_all),
        "current_rows": len(cur_all),
        "reference_missing_share": _share(len(ref_all) - len(ref), len(ref_all)),
        "current_missing_share": _share(len(cur_all) - len(cur), len(cur_all)),
    }
    del ref_all, cur_all
    if ref.size == 0 or cur.size == 0:
        return _skipped(base)

    if ref.size <= SMALL_SAMPLE_MAX_ROWS:
        n_values = np.union1d(ref, cur).size
        if n_values > FEW_VALUES_MAX:
            from scipy.stats import ks_2samp

            p_value = float(ks_2samp(ref, cur)[1])
            return _p_value_result(base, "ks", p_value, inclusive=True)
        _, ref_counts, cur_counts = aligned_counts(ref, cur)
        return _counts_small_sample(base, ref_counts, cur_counts)

    mean = float(np.mean(ref))
    norm = max(float(np.std(ref)), 0.001)
    u = sorted_centred(ref, mean)
    v = sorted_centred(cur, mean)
    # Rounding to float32 can only merge values, never split them: a side with more than 5
    # distinct float32 values has more than 5 distinct values. Else count in float64.
    if distinct_sorted(u) <= FEW_VALUES_MAX and distinct_sorted(v) <= FEW_VALUES_MAX:
        ref_counts = pd.Series(ref, copy=False).value_counts(sort=False)
        cur_counts = pd.Series(cur, copy=False).value_counts(sort=False)
        keys = ref_counts.index.union(cur_counts.index)
        if len(keys) <= FEW_VALUES_MAX:
            p = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
            q = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
            return _distance_result(base, "jensenshannon", jensenshannon(p, q))
    del ref, cur
    score = wasserstein_sorted(u, v) / norm
    return _distance_result(base, "wasserstein", score)


# ------------------------------------------------------------------------ categorical


def _category_counts(values: pd.Series | np.ndarray) -> tuple[pd.Series, int]:
    """Counts of each non-missing value (no pandas object copy) and the number of rows."""
    import numpy as np
    import pandas as pd

    series = values if isinstance(values, pd.Series) else pd.Series(values, copy=False)
    counts = series.value_counts(dropna=True, sort=False)
    # Category dtype lists unused categories with 0; Evidently only sees observed values.
    counts = counts[counts > 0]
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        keys = counts.index.to_numpy(dtype=np.float64, na_value=np.nan)
        counts = counts[np.isfinite(keys)]
    return counts, len(series)


def _categorical_drift(
    column: str, reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray
) -> ColumnDrift:
    import numpy as np

    ref_counts, ref_rows = _category_counts(reference)
    cur_counts, cur_rows = _category_counts(current)
    ref_n, cur_n = int(ref_counts.sum()), int(cur_counts.sum())
    base = {
        "column": column,
        "kind": "categorical",
        "reference_rows": ref_rows,
        "current_rows": cur_rows,
        "reference_missing_share": _share(ref_rows - ref_n, ref_rows),
        "current_missing_share": _share(cur_rows - cur_n, cur_rows),
    }
    if ref_n == 0 or cur_n == 0:
        return _skipped(base)
    keys = ref_counts.index.union(cur_counts.index, sort=False)
    ref_aligned = ref_counts.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    cur_aligned = cur_counts.reindex(keys, fill_value=0).to_numpy(dtype=np.float64)
    if ref_n > SMALL_SAMPLE_MAX_ROWS:
        return _distance_result(base, "jensenshannon", jensenshannon(ref_aligned, cur_aligned))
    if len(keys) <= 2:
        # The Z test compares the share of the smallest value, as Evidently sorts the keys.
        first = min(range(len(keys)), key=keys.__getitem__)
        return _z_result(base, ref_aligned, cur_aligned, first)
    return _counts_small_sample(base, ref_aligned, cur_aligned)


# ------------------------------------------------------------------------ results


def _counts_small_sample(base: dict, ref_counts: np.ndarray, cur_counts: np.ndarray) -> ColumnDrift:
    """Evidently's small-sample test on value counts: Z for <= 2 values, else chi-square."""
    if ref_counts.size <= 2:
        # Keys come sorted from np.union1d, so index 0 is the smallest value.
        return _z_result(base, ref_counts, cur_counts, 0)
    p_value = chisquare_p_value(ref_counts, cur_counts)
    return _p_value_result(base, "chisquare", p_value, inclusive=False)


def _z_result(
    base: dict, ref_counts: np.ndarray, cur_counts: np.ndarray, first: int
) -> ColumnDrift:
    p_value = z_p_value(ref_counts, cur_counts, first)
    return _p_value_result(base, "z", p_value, inclusive=False)


def _p_value_result(base: dict, method: str, p_value: float, *, inclusive: bool) -> ColumnDrift:
    drifted = p_value <= P_VALUE_THRESHOLD if inclusive else p_value < P_VALUE_THRESHOLD
    return ColumnDrift(
        method=method, score=p_value, threshold=P_VALUE_THRESHOLD, drifted=bool(drifted), **base
    )


def _distance_result(base: dict, method: str, score: float) -> ColumnDrift:
    return ColumnDrift(
        method=method,
        score=float(score),
        threshold=DISTANCE_THRESHOLD,
        drifted=bool(score >= DISTANCE_THRESHOLD),
        **base,
    )


def _skipped(base: dict) -> ColumnDrift:
    return ColumnDrift(method=SKIPPED, score=math.nan, threshold=math.nan, drifted=False, **base)


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


# ------------------------------------------------------------------------------ public


def column_drift(
    reference: pd.Series | np.ndarray,
    current: pd.Series | np.ndarray,
    kind: Kind,
    column: str | None = None,
) -> ColumnDrift:
    """Drift of one column, by the test Evidently's DataDriftPreset would pick for it."""
    if column is None:
        column = str(getattr(reference, "name", None) or "value")
    if kind == "numeric":
        return _numeric_drift(column, reference, current)
    if kind == "categorical":
        return _categorical_drift(column, reference, current)
    raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: dict[str, Kind],
    drift_share_threshold: float = 0.5,
) -> DriftSummary:
    """Drift of every listed column and Evidently's share-of-drifted-columns verdict."""
    missing = [c for c in columns if c not in reference or c not in current]
    if missing:
        raise KeyError(f"columns missing from reference or current: {missing}")
    results = [
        column_drift(reference[name], current[name], kind, column=name)
        for name, kind in columns.items()
    ]
    tested = [r for r in results if r.method != SKIPPED]
    share = sum(r.drifted for r in tested) / len(tested) if tested else 0.0
    drifted = sorted((r for r in tested if r.drifted), key=lambda r: r.strength, reverse=True)
    return DriftSummary(
        columns=results,
        share_drifted=share,
        dataset_drifted=bool(tested) and share >= drift_share_threshold,
        top=[r.column for r in drifted],
        drift_share_threshold=drift_share_threshold,
    )
