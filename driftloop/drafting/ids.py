"""The drafted `id_columns`: a unique column, or the event time with the fewest columns
that make rows unique in the sample and are unlikely to collide as the data grows."""

from __future__ import annotations

from itertools import combinations
from typing import TYPE_CHECKING

from driftloop.drafting.profiling import Profile

if TYPE_CHECKING:
    import pandas as pd

# Rows sharing an id with other values are set aside and block their day, so a key is
# kept only when the expected number of colliding pairs per day, at GROWTH times the
# sample's busiest day, stays under MAX_DAILY_COLLISIONS (columns taken as independent).
GROWTH = 3
MAX_DAILY_COLLISIONS = 0.01
MAX_KEY_COLUMNS = 3
MAX_CANDIDATES = 8


def _collision_chance(values: pd.Series, kind: str) -> float:
    """The chance two rows of one day share this column's value."""
    import pandas as pd

    if kind != "timestamp":
        shares = values.astype(str).value_counts(normalize=True)
        return float((shares**2).sum())
    stamps = pd.to_datetime(values).sort_values()
    gaps = stamps.diff().dt.total_seconds()
    resolution = float(gaps[gaps > 0].min()) if (gaps > 0).any() else 86400.0
    hours = stamps.dt.hour.value_counts(normalize=True)
    # Two rows in the same hour share a value with chance resolution / 3600 (uniform inside it).
    return float((hours**2).sum()) * min(1.0, resolution / 3600)


def _regular(times: pd.Series) -> bool:
    """One row per tick of a regular clock (an hourly stream): the time is the row's key."""
    import pandas as pd

    gaps = pd.to_datetime(times).sort_values().diff().dropna()
    return len(gaps) > 10 and bool((gaps == gaps.mode().iloc[0]).mean() >= 0.9)


def draft_id_columns(
    frame: pd.DataFrame,
    profiles: dict[str, Profile],
    time_columns: list[str],
    candidates: list[str],
    busiest_day_rows: int,
) -> tuple[list[str], str]:
    """(id columns, why): a unique categorical or integer column; else the event time's
    columns, alone when they tick regularly, with the fewest others that make a safe key."""

    def keyable(p: Profile) -> bool:
        return p.nulls == 0 and (p.kind in ("categorical", "timestamp") or p.integer)

    usable = [c for c in dict.fromkeys([*time_columns, *candidates]) if keyable(profiles[c])]
    for c in usable:
        p = profiles[c]
        if c not in time_columns and p.kind != "timestamp" and p.distinct == p.rows:
            return [c], "unique and never null in the sample: an identifier"
    if not time_columns or not all(c in usable for c in time_columns):
        return [], "no column or safe combination is unique in the sample"
    unique = not frame.duplicated(subset=time_columns).any()
    if unique and len(time_columns) == 1 and _regular(frame[time_columns[0]]):
        return list(time_columns), "the event time is unique and ticks regularly"
    others = [c for c in usable if c not in time_columns]
    others = sorted(others, key=lambda c: -profiles[c].distinct)[:MAX_CANDIDATES]
    base = 1.0
    for c in time_columns:
        base *= _collision_chance(frame[c], profiles[c].kind)
    chance = {c: _collision_chance(frame[c], profiles[c].kind) for c in others}
    pairs = (GROWTH * busiest_day_rows) ** 2 / 2
    for size in range(0, MAX_KEY_COLUMNS + 1 - len(time_columns)):
        best: tuple[float, list[str]] | None = None
        for extra in combinations(others, size):
            key = [*time_columns, *extra]
            if frame.duplicated(subset=key).any():
                continue
            risk = pairs * base
            for c in extra:
                risk *= chance[c]
            if risk < MAX_DAILY_COLLISIONS and (best is None or risk < best[0]):
                best = (risk, key)
        if best is not None:
            return best[1], (
                f"unique in the sample; about {best[0]:.3f} colliding pairs a day expected at "
                f"{GROWTH}x the sample's busiest day (rows sharing an id with other values are "
                "set aside and block their day)"
            )
    return [], (
        "no combination of the event time with up to "
        f"{MAX_KEY_COLUMNS - 1} columns is a safe key in the sample (online serving needs one)"
    )
