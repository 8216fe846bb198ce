"""A drafted column's rules, the slices, the calendar parts the data carries, and the
partition bounds: each from the sample's values."""

from __future__ import annotations

import json
from datetime import date, timedelta
from itertools import pairwise
from typing import TYPE_CHECKING

from driftloop.drafting.profiling import (
    MAX_ALLOWED_VALUES,
    MIN_SEEN_PER_VALUE,
    RANGE_MARGIN,
    Profile,
    fenced,
    null_limit,
    numeric_rule,
)
from driftloop.drafting.record import Line

if TYPE_CHECKING:
    import pandas as pd


MAX_SLICES = 2
MAX_SLICE_VALUES = 12
# A day further than this from the sample's others is an error in the data, not its range.
MAX_GAP_DAYS = 30


def column_line(item: Profile, is_event: bool) -> Line:
    rule: dict[str, object] = {"type": item.kind}
    why = [f"{item.kind}"]
    if item.nulls == 0:
        rule["nullable"] = False
        why.append("no nulls in the sample (a null row is quarantined)")
    else:
        rule["max_null_fraction"] = null_limit(item)
        why.append(
            f"{item.null_share:.1%} null (worst day {item.max_daily_null_share:.1%}); "
            "limit per partition with room for bad days"
        )
    if is_event:
        rule = {"type": "timestamp", "nullable": False}
    if item.kind == "numeric" and item.low is not None and item.calendar:
        why.append("one value per day (a part of the date): a sample's days do not show its range")
    elif item.kind == "numeric" and item.low is not None and item.low == item.high:
        why.append(f"always {item.low:g} in the sample: no range to widen")
    elif item.kind == "numeric" and item.low is not None:
        rule["min"], rule["max"] = numeric_rule(item)
        margin = f"{RANGE_MARGIN:.0%} of that range"
        why.append(f"seen {item.low:g} to {item.high:g}, widened by {margin} on each side")
        if fenced(item):
            why.append(
                f"1%-99% is {item.q_low:g} to {item.q_high:g}: gross outliers and rare "
                "negatives are quarantined (widen by hand if they are real)"
            )
    if (
        item.kind == "categorical"
        and item.values is not None
        and item.distinct <= MAX_ALLOWED_VALUES
        and item.rows >= 200
        and min(item.values.values()) >= MIN_SEEN_PER_VALUE
    ):
        rule["allowed"] = sorted(item.values)
        why.append(f"all {len(item.values)} values seen at least {MIN_SEEN_PER_VALUE} times")
    elif item.kind == "categorical":
        why.append(f"{item.distinct} distinct values: no fixed list")
    parts = []
    for key, value in rule.items():
        if key == "allowed":
            text = "[" + ", ".join(json.dumps(v) for v in value) + "]"  # type: ignore[union-attr]
        elif isinstance(value, bool):
            text = str(value).lower()
        elif isinstance(value, float):
            text = f"{value:g}" if abs(value) < 1e15 else repr(value)
        else:
            text = str(value)
        parts.append(f"{key}: {text}")
    return Line("{" + ", ".join(parts) + "}", "; ".join(why))


def _second_share(item: Profile) -> float:
    counts = sorted((item.values or {}).values(), reverse=True)
    return counts[1] / sum(counts) if len(counts) > 1 else 0.0


def draft_slices(features: list[str], profiles: dict[str, Profile]) -> list[str]:
    """Up to two features with a few values of which at least two are common (a group that
    is 1% of rows never reaches the size a slice is gated at), categorical first."""
    candidates = [
        n
        for n in features
        if n in profiles
        and 2 <= profiles[n].distinct <= MAX_SLICE_VALUES
        and profiles[n].kind != "timestamp"
        and not profiles[n].calendar
        and _second_share(profiles[n]) >= 0.1
    ]
    order = sorted(
        candidates, key=lambda n: (profiles[n].kind != "categorical", -_second_share(profiles[n]))
    )
    return order[:MAX_SLICES]


def carried_by(frame: pd.DataFrame, features: dict[str, str], part: pd.Series) -> str | None:
    """A feature column that carries this part of the event time already (each determines
    the other on 95% of rows), or None."""
    import pandas as pd

    for c in features:
        if c not in frame or frame[c].nunique() > 60:
            continue
        pair = pd.DataFrame({"v": frame[c].astype(str), "p": part}).dropna()
        if len(pair) < 30:
            continue
        modal = pair.groupby("v")["p"].agg(lambda s: s.value_counts().iloc[0]).sum()
        back = pair.groupby("p")["v"].agg(lambda s: s.value_counts().iloc[0]).sum()
        if min(modal, back) >= 0.95 * len(pair):
            return c
    return None


def partition_bounds(times: pd.Series) -> tuple[date, date, str]:
    """(first day, first day after the last, why): the sample's days, leaving out days more
    than MAX_GAP_DAYS from the rest (an isolated date years away is an error)."""
    import pandas as pd

    days = sorted(pd.to_datetime(times).dropna().dt.normalize().unique())
    gaps = [(b - a).days for a, b in pairwise(days)]
    first, last = 0, len(days) - 1
    while first < last and gaps[first] > MAX_GAP_DAYS:
        first += 1
    while last > first and gaps[last - 1] > MAX_GAP_DAYS:
        last -= 1
    left = first + (len(days) - 1 - last)
    note = f" ({left} isolated day(s) more than {MAX_GAP_DAYS} days away left out)" if left else ""
    start, end = pd.Timestamp(days[first]).date(), pd.Timestamp(days[last]).date()
    return start, end + timedelta(days=1), f"the sample's days{note}"
