"""Partition-level checks of a raw day against its contract, as plain data.

Each check returns a `CheckOutcome` whose metadata lets a person act on a failure: the
columns, the rule, how many rows, up to five example values and the landed files
(`_source_file`) those rows came from. The Dagster layer turns outcomes into asset check
results; the names below are the check names and must stay stable.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from driftloop.data.assembly import AssembledDay

from driftloop.data.check_outcome import (
    BLOCKING_CHECKS,
    CHECK_NAMES,
    CHECKS,
    ROW_COUNT_HIGH,
    ROW_COUNT_LOW,
    CheckOutcome,
    example_values,
    outcome,
    sources,
)
from driftloop.data.column_checks import (
    check_allowed_values,
    check_null_fractions,
    check_schema,
    check_value_ranges,
    not_allowed,
)
from driftloop.data.contract import ColumnType, Contract
from driftloop.data.unseen import check_unseen_categories

__all__ = [
    "BLOCKING_CHECKS",
    "CHECKS",
    "CHECK_NAMES",
    "CheckOutcome",
    "check_allowed_values",
    "check_duplicate_ids",
    "check_event_time_in_partition",
    "check_null_fractions",
    "check_row_count",
    "check_schema",
    "check_unseen_categories",
    "check_value_ranges",
    "failed_blocking",
    "validate_days",
    "validate_partition",
]


def check_duplicate_ids(
    contract: Contract,
    frame: pd.DataFrame,
    conflicts: pd.DataFrame | None = None,
    exact_duplicates: int = 0,
) -> CheckOutcome:
    """Ids unique over the stored rows and the conflicting duplicates set aside from them."""
    import pandas as pd

    ids = contract.id_columns
    if not ids:
        return outcome("duplicate_ids", True, "no id columns in the contract: nothing to check")
    missing = [c for c in ids if c not in frame]
    if missing:
        return outcome(
            "duplicate_ids",
            False,
            f"id column(s) {missing} missing",
            columns=missing,
            rule="unique ids",
            failing_rows=len(frame),
        )
    seen = frame
    if conflicts is not None and len(conflicts):
        seen = pd.concat([frame, conflicts[frame.columns]], ignore_index=True)
    duplicated = seen.duplicated(subset=ids, keep=False)
    count = int(duplicated.sum())
    dropped = f"; {exact_duplicates} exact duplicate row(s) dropped" if exact_duplicates else ""
    if not count:
        return outcome(
            "duplicate_ids",
            True,
            f"{len(frame)} rows, ids {ids} unique{dropped}",
            columns=ids,
            rule="unique",
            exact_duplicates_dropped=exact_duplicates,
        )
    keys = seen.loc[duplicated, ids].astype(str).agg("|".join, axis=1)
    distinct = keys.nunique()
    set_aside = " (quarantined, not stored)" if conflicts is not None and len(conflicts) else ""
    return outcome(
        "duplicate_ids",
        False,
        f"{count} row(s) share {distinct} id value(s) of {ids} with different values"
        f"{set_aside}, e.g. {example_values(keys)}{dropped}",
        columns=ids,
        rule="unique ids (conflicting duplicates)",
        failing_rows=count,
        examples=example_values(keys),
        source_files=sources(seen, duplicated),
        exact_duplicates_dropped=exact_duplicates,
    )


def check_event_time_in_partition(
    contract: Contract, frame: pd.DataFrame, day: str, counted: int | None = None
) -> CheckOutcome:
    """`counted`: rows off the day, when computed already for many days at once."""
    import pandas as pd

    column = contract.event_time.column
    if counted == 0 and column in frame:
        return outcome(
            "event_time_in_partition",
            True,
            f"all {len(frame)} event times fall on {day} ({contract.event_time.timezone})",
            columns=[column],
            rule=f"local day == {day}",
            failing_rows=0,
        )
    if column not in frame:
        return outcome(
            "event_time_in_partition",
            False,
            f"event time column '{column}' missing",
            columns=[column],
            rule=f"local day == {day}",
            failing_rows=len(frame),
        )
    times = pd.to_datetime(frame[column], errors="coerce")
    if isinstance(times.dtype, pd.DatetimeTZDtype):
        times = times.dt.tz_convert(contract.timezone).dt.tz_localize(None)
    wanted = date.fromisoformat(day)
    outside = times.isna() | (times.dt.date != wanted)
    count = int(outside.sum())
    passed = count == 0
    description = (
        f"all {len(frame)} event times fall on {day} ({contract.event_time.timezone})"
        if passed
        else f"column '{column}': {count} row(s) not on {day} "
        f"({contract.event_time.timezone}), e.g. {example_values(frame.loc[outside, column])}"
    )
    return outcome(
        "event_time_in_partition",
        passed,
        description,
        columns=[column],
        rule=f"local day == {day}",
        failing_rows=count,
        examples=example_values(frame.loc[outside, column]) if count else None,
        source_files=sources(frame, outside) if count else None,
    )


def check_row_count(frame: pd.DataFrame, trailing_row_counts: list[int]) -> CheckOutcome:
    rows = len(frame)
    history = [int(n) for n in trailing_row_counts]
    if not history:
        return outcome(
            "row_count", True, f"{rows} rows; no earlier partitions to compare with", rows=rows
        )
    mean = sum(history) / len(history)
    ratio = rows / mean if mean else (1.0 if rows == 0 else float("inf"))
    passed = ROW_COUNT_LOW <= ratio <= ROW_COUNT_HIGH
    verdict = "within" if passed else "outside"
    return outcome(
        "row_count",
        passed,
        f"{rows} rows is {ratio:.2f}x the mean of the last {len(history)} partition(s) "
        f"({mean:.0f}), {verdict} {ROW_COUNT_LOW}x-{ROW_COUNT_HIGH}x",
        rows=rows,
        trailing_mean=round(mean, 1),
        ratio=round(ratio, 3) if ratio != float("inf") else "inf",
        trailing_row_counts=history,
        rule=f"{ROW_COUNT_LOW}x <= rows / trailing mean <= {ROW_COUNT_HIGH}x",
    )


def validate_partition(
    contract: Contract,
    frame: pd.DataFrame,
    day: str,
    trailing_row_counts: list[int],
    assembled: AssembledDay | None = None,
    unseen: dict[str, dict[str, Any]] | None = None,
) -> list[CheckOutcome]:
    """Every check of CHECK_NAMES, in that order, for one raw day.

    `assembled` brings the conflicting duplicates set aside from `frame` (and the exact
    ones dropped); `unseen` the day's unseen categories (`driftloop.data.unseen`).
    """
    conflicts = assembled.conflicts if assembled is not None else None
    exact = assembled.exact_duplicates if assembled is not None else 0
    return [
        check_schema(contract, frame),
        check_null_fractions(contract, frame),
        check_value_ranges(contract, frame),
        check_allowed_values(contract, frame),
        check_duplicate_ids(contract, frame, conflicts, exact),
        check_event_time_in_partition(contract, frame, day),
        check_row_count(frame, trailing_row_counts),
        check_unseen_categories(unseen or {}),
    ]


def failed_blocking(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if o.blocking and not o.passed]


def validate_days(
    contract: Contract,
    days: dict[str, AssembledDay],
    trailing_row_counts: dict[str, list[int]],
    unseen: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, list[CheckOutcome]]:
    """`validate_partition` for many days: the row-level counts of every day come from one
    grouped pass over all their rows, and a day's rows are looked at again only where a
    check fails there (for its examples and files)."""
    import pandas as pd

    frames = [a.frame for a in days.values()]
    if not frames:
        return {}
    rows = pd.concat(frames, ignore_index=True)
    label = pd.Series([day for day, a in days.items() for _ in range(a.rows_stored)], dtype=object)
    counted = _grouped_counts(contract, rows, label, list(days))
    schema = check_schema(contract, rows)
    result = {}
    for day, assembled in days.items():
        frame = assembled.frame
        found = counted[day]
        result[day] = [
            replace(schema, metadata=dict(schema.metadata))
            if schema.passed
            else check_schema(contract, frame),
            check_null_fractions(contract, frame, found["nulls"]),
            check_value_ranges(contract, frame, found["ranges"]),
            check_allowed_values(contract, frame, found["allowed"]),
            check_duplicate_ids(contract, frame, assembled.conflicts, assembled.exact_duplicates),
            check_event_time_in_partition(contract, frame, day, found["off_day"]),
            check_row_count(frame, trailing_row_counts[day]),
            check_unseen_categories(unseen[day]),
        ]
    return result


def _grouped_counts(
    contract: Contract, rows: pd.DataFrame, label: pd.Series, days: list[str]
) -> dict[str, dict[str, Any]]:
    """Per day: nulls per column, (min, max, rows outside) per ranged numeric column, rows
    with other values per column with allowed values, rows off the day (None if unknown)."""
    import pandas as pd

    present = [c for c in contract.columns if c in rows]
    nulls = rows[present].isna().groupby(label).sum().reindex(days, fill_value=0)
    ranged = [
        n
        for n, c in contract.columns.items()
        if n in rows and c.type == ColumnType.numeric and (c.min is not None or c.max is not None)
    ]
    ranges = {}
    for name in ranged:
        column = contract.columns[name]
        values = pd.to_numeric(rows[name], errors="coerce")
        outside = (values < column.min if column.min is not None else False) | (
            values > column.max if column.max is not None else False
        )
        grouped = pd.DataFrame({"v": values, "out": outside}).groupby(label)
        ranges[name] = (
            grouped["v"].min().reindex(days),
            grouped["v"].max().reindex(days),
            grouped["out"].sum().reindex(days, fill_value=0),
        )
    allowed = {
        n: not_allowed(rows[n], c).groupby(label).sum().reindex(days, fill_value=0)
        for n, c in contract.columns.items()
        if n in rows and c.allowed is not None
    }
    off_day = None
    column = contract.event_time.column
    if column in rows and pd.api.types.is_datetime64_dtype(rows[column].dtype):
        times = rows[column]
        wanted = pd.to_datetime(label, format="%Y-%m-%d")
        off = times.isna() | (times.dt.normalize() != wanted)
        off_day = off.groupby(label).sum().reindex(days, fill_value=0)
    return {
        day: {
            "nulls": nulls.loc[day].to_dict(),
            "ranges": {n: (lo[day], hi[day], int(out[day])) for n, (lo, hi, out) in ranges.items()},
            "allowed": {n: int(a[day]) for n, a in allowed.items()},
            "off_day": int(off_day[day]) if off_day is not None else None,
        }
        for day in days
    }
