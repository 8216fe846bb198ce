"""Partition-level checks of a raw day against its contract, as plain data.

Each check returns a `CheckOutcome` whose metadata lets a person act on a failure: the
columns, the rule, how many rows, up to five example values and the landed files
(`_source_file`) those rows came from. The Dagster layer turns outcomes into asset check
results; the names below are the check names and must stay stable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from driftloop.data.contract import ColumnType, Contract
from driftloop.data.ingest import SOURCE_FILE

MAX_EXAMPLES = 5
ROW_COUNT_LOW = 0.3
ROW_COUNT_HIGH = 3.0

# name -> (blocking, what the check means); the order is the order of reporting.
CHECKS: dict[str, tuple[bool, str]] = {
    "schema": (True, "Every contract column is present with its declared type."),
    "null_fractions": (True, "No nulls in nullable=false columns; nulls within max_null_fraction."),
    "value_ranges": (True, "Numeric values within the contract's min/max."),
    "allowed_values": (True, "Categorical/boolean values among the contract's allowed values."),
    "duplicate_ids": (True, "The id columns identify each row once."),
    "event_time_in_partition": (True, "Every event time falls on the partition's local day."),
    "row_count": (False, "Row count within 0.3x-3x of the trailing partitions' mean (warning)."),
}
CHECK_NAMES = list(CHECKS)
BLOCKING_CHECKS = [name for name, (blocking, _) in CHECKS.items() if blocking]


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _outcome(name: str, passed: bool, description: str, **metadata: Any) -> CheckOutcome:
    return CheckOutcome(
        name=name,
        passed=passed,
        blocking=CHECKS[name][0],
        description=description,
        metadata={k: v for k, v in metadata.items() if v is not None},
    )


def _plain(value: Any) -> Any:
    """A JSON-friendly scalar for metadata (timestamps and numpy types become str/float/int)."""
    import pandas as pd

    if value is None or (not isinstance(value, str | list | dict) and pd.isna(value)):
        return "null"
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return int(value) if float(value).is_integer() else float(value)
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return str(value)


def _examples(values: pd.Series) -> list[Any]:
    import pandas as pd

    return [_plain(v) for v in pd.unique(values.astype(object))[:MAX_EXAMPLES]]


def _sources(frame: pd.DataFrame, mask: pd.Series) -> dict[str, int]:
    """Failing rows per landed file: where to look upstream."""
    if SOURCE_FILE not in frame:
        return {}
    counts = frame.loc[mask, SOURCE_FILE].fillna("(unknown)").astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def _expected_dtype(kind: ColumnType) -> str:
    return {
        ColumnType.numeric: "float64",
        ColumnType.categorical: "string",
        ColumnType.boolean: "bool",
        ColumnType.timestamp: "naive timestamp",
    }[kind]


def _dtype_ok(series: pd.Series, kind: ColumnType) -> bool:
    import pandas as pd

    dtype = series.dtype
    if kind == ColumnType.numeric:
        return pd.api.types.is_float_dtype(dtype)
    if kind == ColumnType.boolean:
        return pd.api.types.is_bool_dtype(dtype)
    if kind == ColumnType.timestamp:
        return pd.api.types.is_datetime64_dtype(dtype) and not isinstance(dtype, pd.DatetimeTZDtype)
    if isinstance(dtype, pd.StringDtype):
        return True
    # object columns must hold only strings (or nulls); an empty one is fine.
    return pd.api.types.is_object_dtype(dtype) and bool(series.dropna().map(type).eq(str).all())


def check_schema(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    table, missing, wrong = [], [], []
    for name, column in contract.columns.items():
        present = name in frame
        ok = present and _dtype_ok(frame[name], column.type)
        table.append(
            {
                "column": name,
                "expected": _expected_dtype(column.type),
                "actual": str(frame[name].dtype) if present else "missing",
                "ok": bool(ok),
            }
        )
        if not present:
            missing.append(name)
        elif not ok:
            wrong.append(name)
    passed = not missing and not wrong
    if passed:
        description = f"all {len(contract.columns)} contract columns present with their types"
    else:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if wrong:
            parts.append(f"wrong type in column(s) {wrong}")
        description = "; ".join(parts)
    return _outcome(
        "schema",
        passed,
        description,
        columns=missing + wrong,
        rule="columns and types",
        failing_rows=len(frame) if not passed else 0,
        table=table,
    )


def check_null_fractions(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    import pandas as pd

    table, failing, problems = [], [], []
    rows = len(frame)
    bad_mask = pd.Series(False, index=frame.index)
    for name, column in contract.columns.items():
        if name not in frame:
            continue
        nulls = frame[name].isna()
        count = int(nulls.sum())
        fraction = count / rows if rows else 0.0
        limit = 0.0 if not column.nullable else column.max_null_fraction
        ok = limit is None or (count == 0 if limit == 0.0 else fraction <= limit)
        table.append(
            {
                "column": name,
                "nulls": count,
                "fraction": round(fraction, 4),
                "limit": "not nullable" if not column.nullable else _plain(limit),
                "ok": ok,
            }
        )
        if not ok:
            failing.append(name)
            bad_mask |= nulls
            rule = "nullable=false" if not column.nullable else f"max_null_fraction={limit}"
            problems.append(f"column '{name}' rule {rule}: {count} of {rows} null ({fraction:.1%})")
    passed = not failing
    return _outcome(
        "null_fractions",
        passed,
        "null fractions within the contract" if passed else "; ".join(problems),
        columns=failing,
        rule="nullable / max_null_fraction",
        failing_rows=int(bad_mask.sum()),
        source_files=_sources(frame, bad_mask) if not passed else None,
        table=table,
    )


def check_value_ranges(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    import pandas as pd

    table, failing, problems, examples = [], [], [], {}
    bad_mask = pd.Series(False, index=frame.index)
    for name, column in contract.columns.items():
        if name not in frame or column.type != ColumnType.numeric:
            continue
        if column.min is None and column.max is None:
            continue
        values = pd.to_numeric(frame[name], errors="coerce")
        never = pd.Series(False, index=frame.index)
        below = values < column.min if column.min is not None else never
        above = values > column.max if column.max is not None else never
        outside = below | above
        count = int(outside.sum())
        table.append(
            {
                "column": name,
                "min": _plain(column.min),
                "max": _plain(column.max),
                "observed_min": _plain(values.min()),
                "observed_max": _plain(values.max()),
                "outside": count,
            }
        )
        if count:
            failing.append(name)
            bad_mask |= outside
            examples[name] = _examples(values[outside])
            problems.append(
                f"column '{name}' rule min={_plain(column.min)} max={_plain(column.max)}: "
                f"{count} row(s) outside, e.g. {examples[name]}"
            )
    return _column_rule_outcome(
        "value_ranges", "min/max", "numeric values within min/max",
        frame, failing, problems, examples, bad_mask, table,
    )  # fmt: skip


def _column_rule_outcome(
    name: str,
    rule: str,
    ok_text: str,
    frame: pd.DataFrame,
    failing: list[str],
    problems: list[str],
    examples: dict[str, Any],
    bad_mask: pd.Series,
    table: list[dict[str, Any]],
) -> CheckOutcome:
    """The outcome of a per-column row rule: which columns, how many rows, from which files."""
    passed = not failing
    return _outcome(
        name,
        passed,
        ok_text if passed else "; ".join(problems),
        columns=failing,
        rule=rule,
        failing_rows=int(bad_mask.sum()),
        examples=examples or None,
        source_files=_sources(frame, bad_mask) if not passed else None,
        table=table,
    )


def check_allowed_values(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    import pandas as pd

    table, failing, problems, examples = [], [], [], {}
    bad_mask = pd.Series(False, index=frame.index)
    for name, column in contract.columns.items():
        if name not in frame or column.allowed is None:
            continue
        values = frame[name]
        if column.type == ColumnType.boolean:
            allowed: set[Any] = {bool(v) for v in column.allowed}
            outside = values.notna() & ~values.astype(object).isin(allowed)
        else:
            allowed = {str(v) for v in column.allowed}
            outside = values.notna() & ~values.astype(object).map(str).isin(allowed)
        count = int(outside.sum())
        table.append({"column": name, "allowed": len(allowed), "not_allowed": count})
        if count:
            failing.append(name)
            bad_mask |= outside
            examples[name] = _examples(values[outside])
            problems.append(
                f"column '{name}' rule allowed: {count} row(s) with other values, "
                f"e.g. {examples[name]}"
            )
    return _column_rule_outcome(
        "allowed_values", "allowed", "categorical values among the allowed ones",
        frame, failing, problems, examples, bad_mask, table,
    )  # fmt: skip


def check_duplicate_ids(contract: Contract, frame: pd.DataFrame) -> CheckOutcome:
    ids = contract.id_columns
    if not ids:
        return _outcome("duplicate_ids", True, "no id columns in the contract: nothing to check")
    missing = [c for c in ids if c not in frame]
    if missing:
        return _outcome(
            "duplicate_ids",
            False,
            f"id column(s) {missing} missing",
            columns=missing,
            rule="unique ids",
            failing_rows=len(frame),
        )
    duplicated = frame.duplicated(subset=ids, keep=False)
    count = int(duplicated.sum())
    if not count:
        return _outcome(
            "duplicate_ids",
            True,
            f"{len(frame)} rows, ids {ids} unique",
            columns=ids,
            rule="unique",
        )
    keys = frame.loc[duplicated, ids].astype(str).agg("|".join, axis=1)
    distinct = keys.nunique()
    return _outcome(
        "duplicate_ids",
        False,
        f"{count} row(s) share {distinct} id value(s) of {ids}, e.g. {_examples(keys)}",
        columns=ids,
        rule="unique ids",
        failing_rows=count,
        examples=_examples(keys),
        source_files=_sources(frame, duplicated),
    )


def check_event_time_in_partition(
    contract: Contract, frame: pd.DataFrame, day: str
) -> CheckOutcome:
    import pandas as pd

    column = contract.event_time.column
    if column not in frame:
        return _outcome(
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
        f"({contract.event_time.timezone}), e.g. {_examples(frame.loc[outside, column])}"
    )
    return _outcome(
        "event_time_in_partition",
        passed,
        description,
        columns=[column],
        rule=f"local day == {day}",
        failing_rows=count,
        examples=_examples(frame.loc[outside, column]) if count else None,
        source_files=_sources(frame, outside) if count else None,
    )


def check_row_count(frame: pd.DataFrame, trailing_row_counts: list[int]) -> CheckOutcome:
    rows = len(frame)
    history = [int(n) for n in trailing_row_counts]
    if not history:
        return _outcome(
            "row_count", True, f"{rows} rows; no earlier partitions to compare with", rows=rows
        )
    mean = sum(history) / len(history)
    ratio = rows / mean if mean else (1.0 if rows == 0 else float("inf"))
    passed = ROW_COUNT_LOW <= ratio <= ROW_COUNT_HIGH
    verdict = "within" if passed else "outside"
    return _outcome(
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
    contract: Contract, frame: pd.DataFrame, day: str, trailing_row_counts: list[int]
) -> list[CheckOutcome]:
    """Every check of CHECK_NAMES, in that order, for one raw day."""
    return [
        check_schema(contract, frame),
        check_null_fractions(contract, frame),
        check_value_ranges(contract, frame),
        check_allowed_values(contract, frame),
        check_duplicate_ids(contract, frame),
        check_event_time_in_partition(contract, frame, day),
        check_row_count(frame, trailing_row_counts),
    ]


def failed_blocking(outcomes: list[CheckOutcome]) -> list[CheckOutcome]:
    return [o for o in outcomes if o.blocking and not o.passed]
