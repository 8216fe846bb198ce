"""Column profiles of a sample file for contract drafting: types, ranges, nulls, and leaks.

Nothing here looks at a column's name: every inference comes from the values, so a sample
with renamed columns gets the same proposals under the new names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

# A categorical column gets an `allowed` list when it has at most this many values and
# each was seen often enough that an unseen one is unlikely to be a rare regular.
MAX_ALLOWED_VALUES = 30
MIN_SEEN_PER_VALUE = 5
# More distinct values than this (or a larger share of rows) is an identifier, not a category.
MAX_CATEGORIES = 1000
MAX_CATEGORY_SHARE = 0.5
# An integer column with this few values is a code (a vendor, a payment type, a 0/1 flag):
# typed categorical, since its numbers name things rather than measure them.
MAX_CODE_VALUES = 10
# A numeric column's min/max: the sample's range widened by this share of it on each side,
# within fences at the 1st and 99th percentiles widened by FENCE times their spread: a value
# that far out is a gross error (a fare of 429,490, a trip of 46,826 miles), quarantined
# rather than learnt from. A column non-negative at its 1st percentile keeps 0 as its floor:
# its rare negatives are corrections (a refund, a reversed charge), not measurements.
RANGE_MARGIN = 0.1
FENCE_QUANTILES = (0.01, 0.99)
FENCE = 3.0
# A single column whose metric alone reaches these is the answer key, not a feature.
LEAK_AUC = 0.97
LEAK_R2 = 0.98
# A linear identity explaining the target this well means its columns add up to it.
IDENTITY_R2 = 0.999
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


@dataclass
class Profile:
    """What the sample says about one column."""

    name: str
    kind: str  # numeric | categorical | boolean | timestamp
    rows: int
    nulls: int
    distinct: int
    max_daily_null_share: float = 0.0
    low: float | None = None
    high: float | None = None
    q_low: float | None = None  # FENCE_QUANTILES of a numeric column
    q_high: float | None = None
    values: dict[str, int] | None = None  # categorical value counts (when few)
    date_only: bool = False  # a timestamp column whose values are all at midnight
    integer: bool = False
    calendar: bool = False  # one value per day on every day: a part of the date
    code: bool = False  # integer values typed categorical (see MAX_CODE_VALUES)

    @property
    def null_share(self) -> float:
        return self.nulls / self.rows if self.rows else 0.0


def read_sample(path: Path) -> pd.DataFrame:
    """A CSV or Parquet sample as pandas, with timestamps and booleans recognised."""
    import pandas as pd

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        frame = pd.read_csv(path, keep_default_na=False, na_values=["NA", ""], low_memory=False)
    else:
        raise ValueError(f"sample {path}: expected a .csv or .parquet file, got {suffix!r}")
    if frame.empty:
        raise ValueError(f"sample {path}: no rows")
    frame.columns = [str(c).strip() for c in frame.columns]
    for name in frame.columns:
        frame[name] = _recognise(frame[name])
    return frame


def _recognise(values: pd.Series) -> pd.Series:
    """Text that is all timestamps (or all true/false) becomes that type."""
    import pandas as pd

    if values.dtype != object:
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            return values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values
    present = values.dropna().astype(str).str.strip()
    if present.empty:
        return values
    lowered = present.str.lower()
    if lowered.isin(["true", "false"]).all():
        return values.map(lambda v: None if pd.isna(v) else str(v).strip().lower() == "true")
    if present.str.contains(r"^\d{4}-\d{2}-\d{2}|^\d{1,2}/\d{1,2}/\d{4}", regex=True).mean() < 0.99:
        return values
    parsed = pd.to_datetime(present, errors="coerce", utc=True, format="mixed")
    if parsed.notna().mean() < 0.99:
        return values
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    out[parsed.index] = parsed.dt.tz_localize(None)
    return out


def kind_of(values: pd.Series) -> str:
    import pandas as pd

    if pd.api.types.is_bool_dtype(values.dtype) or (
        values.dtype == object and values.dropna().map(type).eq(bool).all() and values.notna().any()
    ):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return "timestamp"
    if pd.api.types.is_numeric_dtype(values.dtype):
        return "numeric"
    return "categorical"


def profile(frame: pd.DataFrame, days: pd.Series | None) -> dict[str, Profile]:
    """A profile per column; `days` (the rows' event days) gives the worst day's null share."""
    import pandas as pd

    out = {}
    for name in frame.columns:
        values = frame[name]
        kind = kind_of(values)
        present = values.dropna()
        item = Profile(name, kind, len(values), int(values.isna().sum()), int(present.nunique()))
        if days is not None and item.nulls:
            item.max_daily_null_share = float(values.isna().groupby(days).mean().max())
        if days is not None and days.nunique() > 1 and item.distinct > 1:
            # Most days, not all: days in another zone than the column's calendar straddle two.
            item.calendar = bool((values.groupby(days).nunique(dropna=False) <= 1).mean() >= 0.9)
        if kind == "numeric" and len(present):
            numbers = present.astype(float)
            item.low, item.high = float(numbers.min()), float(numbers.max())
            item.q_low, item.q_high = (float(q) for q in numbers.quantile(FENCE_QUANTILES))
            item.integer = bool((numbers == numbers.round()).all())
        small = 2 <= item.distinct <= MAX_CODE_VALUES
        if kind == "numeric" and item.integer and small and not item.calendar:
            # Spelled as ingestion spells a whole number stored as a float ('3', not '3.0').
            item.kind, item.code = "categorical", True
            present = present.astype(float).astype("int64").astype(str)
            item.low = item.high = None
        if kind != "timestamp" and item.distinct <= MAX_ALLOWED_VALUES:
            counts = present.astype(str).value_counts()
            item.values = {str(k): int(v) for k, v in counts.items()}
        if kind == "timestamp" and len(present):
            stamps = pd.to_datetime(present)
            item.date_only = bool((stamps == stamps.dt.normalize()).all())
        out[name] = item
    return out


def nice_bound(value: float, up: bool) -> float:
    """Round outward to two significant digits, so a bound reads like a person wrote it."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    step = 10 ** (math.floor(math.log10(abs(value))) - 1)
    rounded = (math.ceil if up else math.floor)(value / step) * step
    return float(round(rounded, 10))


def numeric_rule(item: Profile) -> tuple[float, float]:
    """min/max: the sample's range widened by RANGE_MARGIN of its span on each side, within
    the outlier fences (module constants); a column non-negative at its 1st percentile keeps
    0 as its floor."""
    low, high = item.low or 0.0, item.high or 0.0
    margin = RANGE_MARGIN * ((high - low) or max(abs(high), 1.0))
    floor, ceiling = low - margin, high + margin
    q_low = low if item.q_low is None else item.q_low
    q_high = high if item.q_high is None else item.q_high
    spread = q_high - q_low
    if spread > 0:
        floor = max(floor, q_low - FENCE * spread)
        ceiling = min(ceiling, q_high + FENCE * spread)
    if q_low >= 0 > floor:
        floor = 0.0
    return nice_bound(floor, up=False), nice_bound(ceiling, up=True)


def fenced(item: Profile) -> bool:
    """Whether numeric_rule's bounds leave out values the sample holds."""
    floor, ceiling = numeric_rule(item)
    return (item.low or 0.0) < floor or (item.high or 0.0) > ceiling


def null_limit(item: Profile) -> float:
    """A per-partition null limit a day's share can swing under: twice the worst day seen,
    at least a half (a partition over it is blocked, which costs more than a null)."""
    worst = max(item.null_share, item.max_daily_null_share)
    return min(1.0, math.ceil(max(0.5, 2 * worst) * 20) / 20)


# --------------------------------------------------------------------------- leaks


def single_column_score(values: pd.Series, label: pd.Series, binary: bool) -> float | None:
    """How well one column predicts the label alone: ROC AUC (binary, either direction) or
    R^2 (regression); categories by their mean label learnt on every other row."""
    import numpy as np
    import pandas as pd

    mask = values.notna() & label.notna()
    if mask.sum() < 30:
        return None
    x, y = values[mask], label[mask].astype(float)
    if not pd.api.types.is_numeric_dtype(x.dtype) or pd.api.types.is_bool_dtype(x.dtype):
        keys = x.astype(str).to_numpy()
        learn = np.arange(len(keys)) % 2 == 0
        means = pd.Series(y.to_numpy()[learn]).groupby(keys[learn]).mean()
        x = pd.Series(keys[~learn]).map(means).fillna(y.mean())
        y = pd.Series(y.to_numpy()[~learn])
    x = x.astype(float).reset_index(drop=True)
    y = y.reset_index(drop=True)
    if binary:
        positives = y == 1
        n_pos, n_neg = int(positives.sum()), int((~positives).sum())
        if n_pos < 10 or n_neg < 10:
            return None
        ranks = x.rank()
        auc = (ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        return float(max(auc, 1 - auc))
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def _r2(x: object, y: object) -> float:
    import numpy as np

    design = np.c_[x, np.ones(len(y))]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coef
    total = ((y - y.mean()) ** 2).sum()
    return float(1 - (residual**2).sum() / total) if total > 0 else 0.0


def identity_members(frame: pd.DataFrame, value: pd.Series, candidates: list[str]) -> list[str]:
    """Columns that add up to `value` (with the others): when a linear fit of the value on
    the numeric candidates is near exact, the columns it cannot do without."""
    import numpy as np

    # Extreme values (a fare of 429,490) would dominate the variance the fit is judged on.
    low, high = value.quantile(0.01), value.quantile(0.99)
    mask = value.notna() & value.between(low, high)
    if mask.sum() < 50 or not candidates:
        return []
    x = frame.loc[mask, candidates].astype(float).fillna(0.0).to_numpy()
    y = value[mask].astype(float).to_numpy()
    # Real bills break their own sums on some rows (a surcharge recorded apart): judge the
    # identity on the four fifths of rows the full fit explains best.
    design = np.c_[x, np.ones(len(y))]
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = np.abs(y - design @ coef)
    keep = residual <= np.quantile(residual, 0.8)
    x, y = x[keep], y[keep]
    if len(y) < 40 or _r2(x, y) < IDENTITY_R2:
        return []
    members = []
    for j, name in enumerate(candidates):
        if _r2(np.delete(x, j, axis=1), y) < IDENTITY_R2:
            members.append(name)
    return members


def recorded_with_outcome(values: pd.Series, label: pd.Series) -> tuple[int, int] | None:
    """(column nulls inside label nulls, label nulls) when the column is missing exactly
    when the outcome is: a value recorded with the outcome, known only after the event."""
    label_null = label.isna()
    column_null = values.isna()
    n_label, n_column = int(label_null.sum()), int(column_null.sum())
    if n_label < 5 or n_column < 5 or n_label == len(label):
        return None
    inside = int((column_null & label_null).sum())
    if inside / n_column >= 0.95 and inside >= 0.5 * n_label:
        return inside, n_label
    return None


def yaml_key(name: str) -> str:
    """A column name as a YAML key: plain when safe, JSON-quoted otherwise."""
    import json
    import re

    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and name.lower() not in _YAML_WORDS
    return name if plain else json.dumps(name)
