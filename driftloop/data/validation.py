"""Partition-level checks of a raw day against its contract, as plain data.

Each check returns a `CheckOutcome` whose metadata lets a person act on a failure: the
columns, the rule, how many rows, up to five example values and the landed files
(`_source_file`) those rows came from. The Dagster layer turns outcomes into asset check
results; the names below are the check names and must stay stable.
"""

from __future__ import annotations

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
)
from driftloop.data.contract import Contract
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
    contract: Contract, frame: pd.DataFrame, day: str
) -> CheckOutcome:
    import pandas as pd

    column = contract.event_time.column
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
